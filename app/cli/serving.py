"""`endoseek serve --workers N`: N uvicorn worker processes behind one port.

Each worker is a whole service (model, batcher, index client) built by `worker_app` from the
environment's settings; one of them, elected by a file lock, also runs the singletons
(app/services/leader.py). Several workers need a vector engine they all share: with the
in-process FAISS index each worker would hold its own copy and miss the others' writes, so
that combination is refused (`check_workers`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from typing import Any

from fastapi import FastAPI

from app.settings import Settings, get_settings

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkersRefusedError(ValueError):
    """This configuration cannot run several workers; the message says what to change."""


def check_workers(settings: Settings, workers: int) -> list[str]:
    """Raise WorkersRefusedError for a setup that cannot share state; return warnings."""
    if workers <= 1:
        return []
    if settings.vector_backend == "faiss":
        raise WorkersRefusedError(
            f"--workers {workers} needs a vector engine shared by the workers, but "
            "ENDOSEEK_VECTOR_BACKEND=faiss keeps the index inside one process (each worker would "
            "miss the others' images). Run one worker, or set ENDOSEEK_VECTOR_BACKEND=milvus with "
            "ENDOSEEK_MILVUS_URI=http://host:19530 (docs/deploy.md, 'Several workers')."
        )
    from indexer.backends import is_lite_uri

    if is_lite_uri(settings.milvus_uri or "milvus.db"):
        raise WorkersRefusedError(
            f"--workers {workers} needs a Milvus server: a Milvus Lite file "
            f"({settings.milvus_uri or 'the default <index_dir>/milvus.db'}) is opened by one "
            "process only. Set ENDOSEEK_MILVUS_URI=http://host:19530 (docs/deploy.md)."
        )
    warnings = []
    if settings.rate_limit_per_minute and not settings.redis_url:
        warnings.append(
            f"ENDOSEEK_RATE_LIMIT_PER_MINUTE is counted per worker without ENDOSEEK_REDIS_URL: "
            f"a key may make up to {workers}x as many requests"
        )
    return warnings


def run_workers(host: str, port: int, workers: int, settings: Settings, **opts: Any) -> None:
    """uvicorn's supervisor: binds the port, spawns `workers` processes, restarts dead ones."""
    import uvicorn

    uvicorn.run(
        "app.cli.serving:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # a worker loads a model before it answers the supervisor's pings promptly
        timeout_worker_healthcheck=60,
        **{**opts, "http": "app.cli.serving:WorkerHttpProtocol"},
    )


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this factory in each worker)."""
    _die_with_parent()
    from app.api import logsafe
    from app.main import create_app

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    logsafe.install()
    return create_app(settings)


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the supervisor dies, so a restarted service never
    meets orphaned workers still holding the port (a crash takes the whole service down)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: uvicorn's supervisor still stops workers
        return
    if os.getppid() != parent or parent == 1:  # the supervisor died before prctl
        os.kill(os.getpid(), signal.SIGKILL)


def __getattr__(name: str) -> object:
    """`WorkerHttpProtocol`: the guarded HTTP protocol with the settings' header limits,
    built in the worker (uvicorn imports it by name: a class made at run time cannot be
    handed to a spawned process)."""
    if name == "WorkerHttpProtocol":
        from app.api.server_options import uvicorn_options

        return uvicorn_options(get_settings())["http"]
    raise AttributeError(name)
