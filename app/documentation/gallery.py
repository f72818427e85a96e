"""The labelled reference gallery: any vector search plus an id -> label mapping."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np


class VectorSearch(Protocol):
    """What prediction needs from an index (indexer.FaissIndex satisfies it)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores (m, k) float32 and ids (m, k) int64, padded with id -1."""
        ...


@dataclass(frozen=True)
class Neighbours:
    """The top-k gallery neighbours of one query: similarity scores and their labels."""

    scores: np.ndarray  # (k,) float, best first
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ReferenceGallery:
    """A search over reference vectors only, and the label of each reference id."""

    index: VectorSearch
    labels: Mapping[int, str]

    @cached_property
    def counts(self) -> Counter[str]:
        """Reference photos per label (too few of a label is a reason for uncertainty)."""
        return Counter(self.labels.values())

    def neighbours(self, queries: np.ndarray, k: int) -> list[Neighbours]:
        """Top-k labelled neighbours per query; padding and unlabelled ids are dropped."""
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        out = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = [
                (float(s), self.labels[int(i)])
                for s, i in zip(row_scores, row_ids, strict=True)
                if int(i) >= 0 and int(i) in self.labels
            ]
            out.append(
                Neighbours(
                    np.asarray([s for s, _ in keep], dtype=np.float32),
                    tuple(label for _, label in keep),
                )
            )
        return out


class ExactSearch:
    """Exact inner-product search over a small in-memory matrix (calibration, tests).

    The service passes its FAISS index instead; this keeps calibration free of the index
    package and lets it search a gallery with some classes left out.
    """

    def __init__(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        self._ids = np.asarray(ids, dtype=np.int64)
        self._vectors = np.asarray(vectors, dtype=np.float32)
        if len(self._ids) != len(self._vectors):
            raise ValueError("ids and vectors differ in length")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = np.asarray(queries, dtype=np.float32) @ self._vectors.T
        k_eff = min(k, sims.shape[1])
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k_eff]
        scores = np.full((len(sims), k), -np.inf, dtype=np.float32)
        ids = np.full((len(sims), k), -1, dtype=np.int64)
        scores[:, :k_eff] = np.take_along_axis(sims, order, axis=1)
        ids[:, :k_eff] = self._ids[order]
        return scores, ids
