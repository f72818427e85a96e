"""IdFilter: the one filter a vector index understands, a frozen set of allowed image ids.

Why ids and not attribute expressions: procedure, kind, labels and dates live in the database,
the source of truth (labels change on review). The search service compiles a user's typed
filters to SQL once and hands the index the ids that pass; each backend compiles the id set to
its own mechanism (a FAISS ``IDSelectorBatch`` or exact scan, a Milvus ``id in [...]``
expression). Nothing filterable is copied into the vector store, so nothing there goes stale.

Example:
    >>> f = IdFilter.of([7, 3, 7])
    >>> len(f), 3 in f, f.ids.tolist()
    (2, True, [3, 7])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class IdFilter:
    """Allowed int64 ids, sorted and unique; the array is read-only so the filter is frozen."""

    ids: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        arr = self.ids
        if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 1:
            raise TypeError("build an IdFilter with IdFilter.of(ids)")
        if arr.flags.writeable:
            raise TypeError("IdFilter ids must be read-only: build it with IdFilter.of(ids)")

    @classmethod
    def of(cls, ids: Iterable[int] | np.ndarray) -> IdFilter:
        """The filter allowing exactly `ids` (any order, duplicates ignored, ids >= 0)."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        if arr.size == 0:
            arr = np.zeros(0, dtype=np.int64)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        if arr.size and arr.min() < 0:
            raise ValueError("ids must be non-negative (-1 marks padding)")
        out = np.unique(arr.astype(np.int64, copy=False))
        out.flags.writeable = False
        return cls(out)

    def __len__(self) -> int:
        return int(self.ids.size)

    def __contains__(self, image_id: object) -> bool:
        if not isinstance(image_id, int | np.integer):
            return False
        pos = int(np.searchsorted(self.ids, image_id))
        return pos < self.ids.size and int(self.ids[pos]) == int(image_id)

    def __repr__(self) -> str:
        return f"IdFilter({len(self)} ids)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdFilter) and np.array_equal(self.ids, other.ids)

    __hash__ = None  # type: ignore[assignment]  # equality by content; not meant as a dict key

    def mask(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of `ids` the filter allows."""
        return np.isin(np.asarray(ids, dtype=np.int64), self.ids, assume_unique=False)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """The allowed ids in consecutive slices of at most `size` (for size-limited backends)."""
        for start in range(0, len(self), size):
            yield self.ids[start : start + size]
