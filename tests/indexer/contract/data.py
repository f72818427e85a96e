"""The contract suite's data: seeded clustered unit vectors (synthetic), and a helper that
records what an index answers in JSON-able form (compared across processes)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from indexer import IdFilter, VectorIndex
from tests.indexer.conftest import clustered

N, DIM, NQ, K = 3_000, 64, 40, 10


@dataclass(frozen=True)
class Data:
    ids: np.ndarray  # sparse, unordered image ids
    vectors: np.ndarray
    queries: np.ndarray  # from the same clusters, not in the index


@cache
def dataset(dim: int = DIM, n: int = N) -> Data:
    ids = np.random.default_rng(5).permutation(n * 7)[:n].astype(np.int64) + 1
    return Data(ids, clustered(n, dim, seed=3), clustered(NQ, dim, seed=3, points=11))


def brute_force(
    data: Data, queries: np.ndarray, k: int = K, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, ids) over the data, or over its allowed ids only."""
    keep = np.ones(len(data.ids), bool) if allowed is None else np.isin(data.ids, allowed)
    ids, vecs = data.ids[keep], data.vectors[keep]
    scores = queries @ vecs.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true ids (ignoring padding) that were found."""
    shares = []
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        shares.append(len(set(f.tolist()) & set(t.tolist())) / max(len(t), 1))
    return float(np.mean(shares))


def answers(index: VectorIndex, queries: np.ndarray, allowed: IdFilter) -> dict:
    """Count, ids and search results (plain and filtered) of an index, JSON-able."""
    scores, found = index.search(queries, K)
    f_scores, f_found = index.search(queries, K, allowed=allowed)
    return {
        "len": len(index),
        "ids": index.ids().tolist(),
        "found": found.tolist(),
        "scores": scores.tolist(),
        "f_found": f_found.tolist(),
        "f_scores": f_scores.tolist(),
    }
