"""Writing one benchmark's section of docs/benchmarks.md without touching the others."""

from __future__ import annotations

import re
from pathlib import Path


def _block(level: str, heading: str) -> re.Pattern[str]:
    """A heading line and everything up to the next heading of the same or a higher level."""
    stop = "|".join(re.escape("#" * n + " ") for n in range(1, len(level) + 1))
    return re.compile(rf"^{re.escape(level + ' ' + heading)}\n.*?(?=^(?:{stop})|\Z)", re.S | re.M)


def write_section(path: Path, section: str, body: str, subsection: str | None = None) -> None:
    """Replace (or append) `## section`; with `subsection`, only its `### subsection` inside.

    `body` is the full text of what is replaced, heading line included.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    outer = _block("##", section)
    found = outer.search(text)
    if subsection is None:
        new_outer = body.rstrip("\n") + "\n\n"
    else:
        current = found.group(0) if found else f"## {section}\n\n"
        inner = _block("###", subsection)
        if inner.search(current):
            new_outer = inner.sub(lambda _: body.rstrip("\n") + "\n\n", current, count=1)
        else:
            new_outer = current.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n\n"
    if found:
        text = text[: found.start()] + new_outer + text[found.end() :]
    else:
        text = text.rstrip("\n") + "\n\n" + new_outer
    path.write_text(text.rstrip("\n") + "\n")
