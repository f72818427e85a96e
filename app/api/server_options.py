"""uvicorn's connection limits and timeouts, taken from the settings (used by `endoseek serve`)."""

from __future__ import annotations

from typing import Any

from app.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run: keep-alive, concurrency, backlog, header limits."""
    opts: dict[str, Any] = {
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "limit_concurrency": settings.limit_concurrency or None,
        "backlog": settings.backlog,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    try:
        from app.api.http_protocol import protocol_for
    except ImportError:  # pragma: no cover - no httptools: h11 caps headers, with no deadline
        opts["http"] = "h11"
    else:
        opts["http"] = protocol_for(settings.header_timeout_s, settings.max_header_bytes)
    return opts
