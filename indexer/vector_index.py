"""The VectorIndex protocol: what the service and the batch jobs may ask of any vector index.

FAISS (in-process, the reference) and Milvus (Lite or a server) implement it, and the contract
suite in tests/indexer/contract holds every backend to the same answers:

- ``add`` is an upsert: re-adding an id replaces its vector and keeps the count.
- ``search`` takes an optional :class:`~indexer.filters.IdFilter` of allowed ids; each backend
  compiles it (exactly, or at recall@10 >= 0.95 on approximate indexes).
- results are padded to k with score -inf and id -1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.filters import IdFilter

#: Score written where fewer than k results exist (the id there is -1).
PAD_SCORE = float("-inf")
#: Id written where fewer than k results exist.
PAD_ID = -1


@runtime_checkable
class VectorIndex(Protocol):
    """Inner-product index over unit vectors keyed by int64 image ids."""

    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert: add or replace vectors; re-adding an id replaces its vector."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; return how many of them were present."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed: IdFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores (m, k) float32, ids (m, k) int64), padded with -inf / -1.

        With `allowed`, only those ids can be returned.
        """
        ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray:
        """All ids present, sorted ascending."""
        ...

    def save(self, path: Path) -> None:
        """Persist: FAISS writes one snapshot file; a server backend flushes (path ignored)."""
        ...

    def flush(self) -> None:
        """Make every write so far durable (FAISS: nothing to do; it lives in memory)."""
        ...


#: How far a vector's L2 norm may be from 1 (inner product = cosine only for unit vectors).
NORM_TOLERANCE = 1e-3


def check_ids(ids: np.ndarray) -> np.ndarray:
    """Ids as a contiguous 1-D int64 array; -1 is reserved for padding, so ids are >= 0."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"ids must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError("ids must be non-negative (-1 marks padding)")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_vectors(vectors: np.ndarray, dim: int, what: str, *, unit: bool) -> np.ndarray:
    """Finite float32 rows of width `dim` (unit length when `unit`), every backend alike."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and what == "queries":
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}) for this index, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    if unit and len(arr):
        norms = np.linalg.norm(arr, axis=1)
        if np.abs(norms - 1).max() > NORM_TOLERANCE:
            raise ValueError(f"{what} must be L2-normalised (inner product = cosine)")
    return np.ascontiguousarray(arr)
