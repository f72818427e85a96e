"""Hook point for the documentation package: annotate each newly ingested image.

A hook runs inside the ingest transaction (so a predicted label is stored atomically with the
image and its vector) and returns what the API answers about the image's landmark and the
requirements of the procedure's standard it now fulfils. `app.documentation` registers its
hooks by exposing `get_ingest_hooks(runtime) -> list[IngestHook]` (see app/main.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from sqlalchemy.orm import Session

from app.db.models import Image, Procedure


@dataclass
class IngestAnnotation:
    """What a hook adds to the per-file ingest answer."""

    landmark: str | None = None
    score: float | None = None
    fulfils: list[str] = field(default_factory=list)


class IngestHook(Protocol):
    """Called once per new image, inside the ingest transaction, after the image is flushed;
    `procedure` is the one the request read first (detached: read its columns only)."""

    def __call__(
        self, session: Session, procedure: Procedure, image: Image, vector: np.ndarray
    ) -> IngestAnnotation | None: ...
