"""The VectorIndex contract, held over every backend (see conftest.py for the list).

Exact backends (FAISS flat, Milvus FLAT) must return the same top-k ids as FAISS flat; ANN
backends (HNSW) must reach recall@10 >= 0.95. Filtered searches must equal brute force over
the allowed ids (exactly where the backend promises it, recall >= 0.95 on an HNSW graph walk).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer import PAD_ID, FaissIndex, IdFilter, VectorIndex
from tests.indexer.contract.conftest import EXACT_FILTER_LIMIT, Case
from tests.indexer.contract.data import DIM, K, answers, brute_force, dataset, recall
from tests.timing import scaled

ROOT = Path(__file__).resolve().parents[3]
RECALL = 0.95


def filled(case: Case, dim: int = DIM) -> VectorIndex:
    data = dataset(dim)
    index = case.make(dim)
    index.add(data.ids, data.vectors)
    return index


def reference_topk(queries: np.ndarray) -> np.ndarray:
    """FAISS flat, the reference every backend is checked against."""
    data = dataset()
    ref = FaissIndex(DIM, device="cpu", hnsw_threshold=10**9)
    ref.add(data.ids, data.vectors)
    return ref.search(queries, K)[1]


def test_is_a_vector_index(case: Case) -> None:
    assert isinstance(case.make(DIM), VectorIndex)


def test_top_k_matches_faiss_flat(case: Case) -> None:
    data = dataset()
    index = filled(case)
    scores, found = index.search(data.queries, K)
    want = reference_topk(data.queries)
    assert found.shape == (len(data.queries), K) and found.dtype == np.int64
    assert scores.dtype == np.float32
    assert np.array_equal(want, brute_force(data, data.queries)[1])  # the reference is exact
    if case.exact:
        assert found.tolist() == want.tolist()
    else:
        assert recall(found, want) >= RECALL
    true_scores = np.einsum("qd,qkd->qk", data.queries, data.vectors[_rows(data.ids, found)])
    np.testing.assert_allclose(scores, true_scores, atol=1e-4)  # scores are inner products


def _rows(ids: np.ndarray, found: np.ndarray) -> np.ndarray:
    order = np.argsort(ids)
    return order[np.searchsorted(ids, found, sorter=order)]


@pytest.mark.parametrize("share", [0.02, 0.5], ids=["small-filter", "large-filter"])
def test_filtered_search_equals_brute_force_over_the_filter(case: Case, share: float) -> None:
    data = dataset()
    index = filled(case)
    rng = np.random.default_rng(int(share * 100))
    allowed = rng.choice(data.ids, int(share * len(data.ids)), replace=False)
    extra = np.array([10**9 + 7])  # allowed but never indexed: must not matter
    scores, found = index.search(data.queries, K, allowed=IdFilter.of(np.r_[allowed, extra]))
    _, want = brute_force(data, data.queries, allowed=allowed)
    assert np.isin(found[found >= 0], allowed).all()
    assert (found >= 0).all()  # the filter allows at least k indexed ids
    small = len(allowed) <= EXACT_FILTER_LIMIT
    if case.exact or small:  # FLAT, or an HNSW filter small enough to be scanned exactly
        assert found.tolist() == want.tolist()
    else:
        assert recall(found, want) >= RECALL


def test_filter_with_fewer_than_k_ids_pads(case: Case) -> None:
    data = dataset()
    index = filled(case)
    allowed = np.r_[data.ids[:3], 10**9 + 7]
    scores, found = index.search(data.queries[:2], K, allowed=IdFilter.of(allowed))
    assert (np.sort(found[:, :3], axis=1) == np.sort(data.ids[:3])).all()
    assert (found[:, 3:] == PAD_ID).all() and np.isneginf(scores[:, 3:]).all()
    empty = index.search(data.queries[:2], K, allowed=IdFilter.of([]))[1]
    assert (empty == PAD_ID).all()


def test_deleted_ids_never_return(case: Case) -> None:
    data = dataset()
    index = filled(case)
    top1 = np.unique(index.search(data.queries, K)[1][:, 0])
    gone = np.r_[top1, data.ids[:100]]
    present = len(np.unique(gone))
    assert index.remove(np.r_[gone, 10**9 + 7]) == present
    assert index.remove(gone[:5]) == 0
    assert len(index) == len(data.ids) - present
    _, found = index.search(data.queries, K)
    assert not np.isin(found, gone).any() and (found >= 0).all()
    allowed = IdFilter.of(np.r_[gone, data.ids[100:400]])  # filter naming deleted ids
    _, found = index.search(data.queries, K, allowed=allowed)
    assert not np.isin(found, gone).any()
    assert not np.isin(index.ids(), gone).any()


def test_double_upsert_keeps_the_count(case: Case) -> None:
    data = dataset()
    index = filled(case)
    index.add(data.ids, data.vectors)
    assert len(index) == len(data.ids)
    moved = data.queries[:3]  # three ids get new vectors (the queries themselves)
    index.add(data.ids[:3], moved)
    assert len(index) == len(data.ids)
    assert index.ids().tolist() == np.sort(data.ids).tolist()
    scores, found = index.search(moved, K)
    assert found[:, 0].tolist() == data.ids[:3].tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)
    assert all((row == i).sum() == 1 for row, i in zip(found, data.ids[:3], strict=True))


def test_empty_index_and_large_k_pad(case: Case) -> None:
    data = dataset()
    index = case.make(DIM)
    assert len(index) == 0 and index.ids().tolist() == []
    index.add(data.ids[:5], data.vectors[:5])
    scores, found = index.search(data.queries[:1], 8)
    assert sorted(found[0, :5].tolist()) == sorted(data.ids[:5].tolist())
    assert (found[0, 5:] == PAD_ID).all() and np.isneginf(scores[0, 5:]).all()


def test_identical_after_restart_in_a_new_process(case: Case) -> None:
    data = dataset()
    index = filled(case)
    index.remove(data.ids[:10])
    allowed = data.ids[::4]
    before = answers(index, data.queries, IdFilter.of(allowed))
    spec = {**case.persist(index), "dim": DIM, "allowed": allowed.tolist()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "tests.indexer.contract.reopen", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(180),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    after = json.loads(run.stdout.strip().splitlines()[-1])
    assert after["len"] == before["len"] == len(data.ids) - 10
    assert after["ids"] == before["ids"]
    assert after["found"] == before["found"]
    assert after["f_found"] == before["f_found"]
    np.testing.assert_allclose(after["scores"], before["scores"], atol=1e-5)
    np.testing.assert_allclose(after["f_scores"], before["f_scores"], atol=1e-5)


def test_alias_flip_with_a_dimension_change(case: Case) -> None:
    gens = case.generations()
    if gens is None:
        pytest.skip("FAISS generations are snapshot files (tests/indexer/test_snapshot.py)")
    old, new = dataset(DIM), dataset(16)
    gens.open("model-old", DIM).add(old.ids, old.vectors)
    assert gens.active_collection() is None
    gens.activate("model-old")
    assert gens.is_active("model-old")
    found = gens.current().search(old.queries, K)[1]
    assert recall(found, reference_topk(old.queries)) >= (1.0 if case.exact else RECALL)

    fresh = gens.open("model-new", 16)  # re-index fills the new model's collection meanwhile
    fresh.add(new.ids[:500], new.vectors[:500])
    current = gens.current()
    assert current.dim == DIM and len(current) == len(old.ids)  # searches still see the old
    gens.activate("model-new")
    flipped = gens.current()
    assert flipped.dim == 16 and len(flipped) == 500 and gens.is_active("model-new")
    _, found = flipped.search(new.queries, K)
    _, want = brute_force(new, new.queries, allowed=new.ids[:500])
    assert recall(found, want) >= (1.0 if case.exact else RECALL)
    with pytest.raises(ValueError, match="active"):
        gens.drop("model-new")
    gens.activate("model-old")  # and back: the old collection was kept
    assert gens.current().dim == DIM and len(gens.current()) == len(old.ids)
    gens.drop("model-new")
    with pytest.raises(LookupError):
        gens.activate("model-new")
