"""FaissIndex behaviour on real faiss CPU indexes, flat and HNSW alike."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from indexer import PAD_ID, FaissIndex, IdFilter, VectorIndex
from tests.indexer.conftest import clustered
from tests.timing import scaled

# hnsw_threshold=0 puts the index on HNSW from the first vector.
KINDS = {"flat": {"hnsw_threshold": 10**9}, "hnsw": {"hnsw_threshold": 0}}


@pytest.fixture(params=sorted(KINDS))
def make_index(request):
    def make(dim: int = 16, **kw) -> FaissIndex:
        return FaissIndex(dim, device="cpu", **{**KINDS[request.param], **kw})

    make.kind = request.param
    return make


def test_is_a_vector_index() -> None:
    assert isinstance(FaissIndex(8, device="cpu"), VectorIndex)


def test_add_then_search_finds_each_vector_first(make_index, vectors) -> None:
    index = make_index()
    x = vectors(50)
    ids = np.arange(100, 150)
    index.add(ids, x)
    scores, found = index.search(x, 3)
    assert index.kind == make_index.kind
    assert len(index) == 50
    assert found.dtype == np.int64 and scores.dtype == np.float32
    assert found[:, 0].tolist() == ids.tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert index.ids().tolist() == ids.tolist()


def test_re_adding_an_id_replaces_its_vector(make_index, vectors) -> None:
    index = make_index()
    x = vectors(20)
    index.add(np.arange(20), x)
    new = vectors(1, seed=7)
    index.add(np.array([5]), new)
    assert len(index) == 20
    scores, found = index.search(np.vstack([new, x[5:6]]), 20)
    assert found[0, 0] == 5 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert (found[1] == 5).sum() == 1  # one copy of id 5, and it is no longer x[5]
    assert found[1, 0] != 5


def test_duplicate_ids_in_one_batch_keep_the_last(make_index, vectors) -> None:
    index = make_index()
    x = vectors(3)
    index.add(np.array([1, 1, 2]), x)
    assert len(index) == 2
    assert index.search(x[1:2], 1)[1][0, 0] == 1


def test_remove_returns_how_many_were_present(make_index, vectors) -> None:
    index = make_index(compact_ratio=10.0)  # keep tombstones: test the filtering itself
    x = vectors(30)
    index.add(np.arange(30), x)
    assert index.remove(np.array([3, 4, 4, 999])) == 2
    assert index.remove(np.array([3])) == 0
    assert len(index) == 28
    _, found = index.search(x, 30)
    assert not np.isin(found, [3, 4]).any()
    assert (found[:, :28] >= 0).all() and (found[:, 28:] == PAD_ID).all()
    assert 3 not in index.ids()


def test_removed_id_can_come_back(make_index, vectors) -> None:
    index = make_index(compact_ratio=10.0)
    x = vectors(10)
    index.add(np.arange(10), x)
    index.remove(np.array([2]))
    index.add(np.array([2]), x[2:3])
    assert len(index) == 10
    assert index.search(x[2:3], 1)[1][0, 0] == 2


def test_empty_index_search_is_all_padding(make_index, vectors) -> None:
    scores, found = make_index().search(vectors(2), 5)
    assert found.shape == (2, 5) and (found == -1).all()
    assert np.isneginf(scores).all()


def test_k_larger_than_the_index_is_padded(make_index, vectors) -> None:
    index = make_index()
    x = vectors(4)
    index.add(np.arange(4), x)
    scores, found = index.search(x[:1], 100)
    assert found.shape == (1, 100)
    assert sorted(found[0, :4].tolist()) == [0, 1, 2, 3]
    assert (found[0, 4:] == -1).all() and np.isneginf(scores[0, 4:]).all()
    assert (np.diff(scores[0, :4]) <= 1e-6).all()


@pytest.mark.parametrize("bad_k", [0, -3, 2.5, True])
def test_bad_k_is_rejected(bad_k, vectors) -> None:
    index = FaissIndex(16, device="cpu")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(vectors(1), bad_k)


def test_wrong_dim_is_rejected_with_a_clear_error(vectors) -> None:
    index = FaissIndex(16, device="cpu")
    with pytest.raises(ValueError, match=r"shape \(n, 16\).*\(3, 8\)"):
        index.add(np.arange(3), vectors(3, dim=8))
    index.add(np.arange(3), vectors(3))
    with pytest.raises(ValueError, match=r"queries must have shape \(n, 16\)"):
        index.search(vectors(1, dim=32), 1)


def test_bad_vectors_and_ids_are_rejected(vectors) -> None:
    index = FaissIndex(16, device="cpu")
    with pytest.raises(ValueError, match="L2-normalised"):
        index.add(np.arange(2), vectors(2) * 3)
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.arange(1), np.full((1, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match="2 ids for 3 vectors"):
        index.add(np.arange(2), vectors(3))
    with pytest.raises(ValueError, match="non-negative"):
        index.add(np.array([-1]), vectors(1))
    with pytest.raises(ValueError, match="integer"):
        index.add(np.array([1.5]), vectors(1))
    assert len(index) == 0


def test_grows_from_flat_to_hnsw_past_the_threshold(vectors) -> None:
    index = FaissIndex(16, device="cpu", hnsw_threshold=50)
    x = vectors(80)
    index.add(np.arange(40), x[:40])
    assert index.kind == "flat"
    index.add(np.arange(40, 80), x[40:])
    assert index.kind == "hnsw" and len(index) == 80
    assert index.search(x, 1)[1][:, 0].tolist() == list(range(80))


def test_hnsw_compacts_tombstones_and_can_shrink_to_flat(vectors) -> None:
    index = FaissIndex(16, device="cpu", hnsw_threshold=20, compact_ratio=0.25)
    x = vectors(40)
    index.add(np.arange(40), x)
    assert index.kind == "hnsw"
    index.remove(np.arange(5))  # 5 / 40 tombstones: below the ratio, kept
    assert index._store.dead == 5
    index.remove(np.arange(5, 30))  # past the ratio: rebuilt from the 10 live vectors
    assert index._store.dead == 0 and index.kind == "flat"
    assert index.ids().tolist() == list(range(30, 40))
    assert index.search(x[35:36], 1)[1][0, 0] == 35


def test_hnsw_agrees_with_exact_search_on_clustered_data() -> None:
    """Synthetic clustered vectors: HNSW recall@10 against exact flat search."""
    x = clustered(3000, 64, seed=1)
    queries = clustered(200, 64, seed=1, points=2)
    ids = np.arange(3000) * 3 + 11
    flat = FaissIndex(64, device="cpu")
    hnsw = FaissIndex(64, device="cpu", hnsw_threshold=1000, ef_search=64)
    for index in (flat, hnsw):
        index.add(ids, x)
    assert (flat.kind, hnsw.kind) == ("flat", "hnsw")
    _, exact = flat.search(queries, 10)
    _, approx = hnsw.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95


def test_save_and_load_round_trip(make_index, vectors, tmp_path) -> None:
    index = make_index(compact_ratio=10.0)
    x = vectors(30)
    index.add(np.arange(30), x)
    index.remove(np.array([7]))
    index.save(tmp_path / "i.faiss")
    loaded = FaissIndex.load(tmp_path / "i.faiss", device="cpu", **KINDS[make_index.kind])
    assert loaded.kind == index.kind and len(loaded) == 29
    assert loaded.ids().tolist() == index.ids().tolist()
    np.testing.assert_array_equal(loaded.search(x, 5)[1], index.search(x, 5)[1])
    with pytest.raises(ValueError, match="dim 16, expected 8"):
        FaissIndex.load(tmp_path / "i.faiss", dim=8)


def test_concurrent_searches_while_adding(vectors) -> None:
    index = FaissIndex(16, device="cpu", hnsw_threshold=300)
    x = vectors(600)
    index.add(np.arange(50), x[:50])
    stop = threading.Event()

    def writer() -> None:
        for start in range(50, 600, 25):
            index.add(np.arange(start, start + 25), x[start : start + 25])
        stop.set()

    def reader(seed: int) -> int:
        rng = np.random.default_rng(seed)
        done = 0
        while not stop.is_set() or done < 5:
            i = int(rng.integers(0, 50))
            scores, found = index.search(x[i : i + 1], 10)
            assert found[0, 0] == i and found.shape == (1, 10)
            assert ((found >= 0) & (found < 600) | (found == -1)).all()
            done += 1
        return done

    with ThreadPoolExecutor(max_workers=4) as pool:
        readers = [pool.submit(reader, s) for s in range(3)]
        pool.submit(writer).result(timeout=scaled(120))
        assert all(f.result(timeout=scaled(120)) >= 5 for f in readers)
    assert len(index) == 600 and index.kind == "hnsw"


def test_search_threads_cap_holds_only_during_the_search(make_index, vectors) -> None:
    """The OpenMP cap is the search's own: results unchanged, the thread's setting restored."""
    import faiss

    x = vectors(200)
    capped, free = make_index(search_threads=1), make_index()
    for index in (capped, free):
        index.add(np.arange(200), x)
    inside: list[int] = []
    search = capped._store.search

    def spy(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        inside.append(faiss.omp_get_max_threads())
        return search(queries, k)

    capped._store.search = spy
    out: dict[str, object] = {}

    def run() -> None:  # in a thread of its own: OpenMP's thread count is per thread
        faiss.omp_set_num_threads(3)
        out["capped"], out["free"] = capped.search(x[:20], 5), free.search(x[:20], 5)
        out["after"] = faiss.omp_get_max_threads()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert inside == [1] and out["after"] == 3
    for got, want in zip(out["capped"], out["free"], strict=True):
        np.testing.assert_array_equal(got, want)


# -- id filters ---------------------------------------------------------------------------
def _truth(x: np.ndarray, ids: np.ndarray, queries: np.ndarray, allowed: np.ndarray, k: int):
    keep = np.isin(ids, allowed)
    order = np.argsort(-(queries @ x[keep].T), axis=1, kind="stable")[:, :k]
    return ids[keep][order]


@pytest.mark.parametrize(
    ("kw", "path"),
    [
        ({"hnsw_threshold": 10**9}, "flat-selector"),
        ({"hnsw_threshold": 0}, "hnsw-exact-scan"),
        ({"hnsw_threshold": 0, "exact_filter_limit": 0}, "hnsw-graph"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_filtered_search_returns_only_allowed_ids(kw: dict, path: str) -> None:
    """Each compile path of an IdFilter: equal to brute force over the allowed ids (flat and
    the exact scan), recall@10 >= 0.95 on the graph walk; tombstones never come back."""
    x = clustered(3000, 32, seed=4)
    queries = clustered(40, 32, seed=4, points=5)
    ids = np.arange(3000) * 2 + 1
    index = FaissIndex(32, device="cpu", compact_ratio=10.0, **kw)
    index.add(ids, x)
    index.remove(ids[:30])  # tombstones on HNSW
    allowed = np.random.default_rng(1).choice(ids[30:], 1500, replace=False)
    flt = IdFilter.of(np.r_[allowed, ids[:30]])  # naming removed ids changes nothing
    graph = path == "hnsw-graph"
    if index.kind == "hnsw":
        assert (index._store.filtered_ef(len(flt), 10) is not None) == graph
    _, found = index.search(queries, 10, allowed=flt)
    want = _truth(x, ids, queries, allowed, 10)
    assert np.isin(found, allowed).all()
    if graph:
        rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, want, strict=True)])
        assert rec >= 0.95
    else:
        assert found.tolist() == want.tolist()


def test_sparse_filter_on_hnsw_is_scanned_exactly_not_walked() -> None:
    """A filter too sparse for the ef cap takes the exact scan even above the size limit."""
    index = FaissIndex(8, device="cpu", hnsw_threshold=0, exact_filter_limit=10, filter_ef_cap=256)
    index.add(np.arange(2000), clustered(2000, 8, seed=2))
    store = index._store
    assert store.filtered_ef(1000, 10) == 256  # 128 * 2000 / 1000
    assert store.filtered_ef(500, 10) is None  # would need ef 512 > cap
    assert store.filtered_ef(10, 10) is None  # within the exact limit


def test_filter_smaller_than_k_pads_and_empty_filter_finds_nothing(make_index, vectors) -> None:
    index = make_index()
    x = vectors(50)
    index.add(np.arange(50), x)
    scores, found = index.search(x[:2], 5, allowed=IdFilter.of([3, 9, 999]))
    assert sorted(found[0, :2].tolist()) == [3, 9] and (found[:, 2:] == PAD_ID).all()
    assert np.isneginf(scores[:, 2:]).all()
    assert (index.search(x[:2], 5, allowed=IdFilter.of([]))[1] == PAD_ID).all()
    with pytest.raises(TypeError, match="IdFilter"):
        index.search(x[:1], 5, allowed=[3, 9])


def test_filtered_search_survives_the_torch_utils_patch(make_index, vectors) -> None:
    """faiss.contrib.torch_utils replaces search with one that drops search parameters."""
    import faiss.contrib.torch_utils  # noqa: F401 - the global patch under test

    index = make_index()
    x = vectors(100)
    index.add(np.arange(100), x)
    _, found = index.search(x[:5], 3, allowed=IdFilter.of([7, 8, 9]))
    assert set(found.ravel().tolist()) <= {7, 8, 9}


def test_id_filter_is_frozen_sorted_and_unique() -> None:
    flt = IdFilter.of(np.array([9, 3, 9, 4], dtype=np.int32))
    assert flt.ids.dtype == np.int64 and flt.ids.tolist() == [3, 4, 9] and len(flt) == 3
    assert 4 in flt and 5 not in flt and "4" not in flt
    with pytest.raises(ValueError):
        flt.ids[0] = 1
    assert flt == IdFilter.of([4, 3, 9]) and list(flt.chunks(2))[1].tolist() == [9]
    assert flt.mask(np.array([1, 3, 9])).tolist() == [False, True, True]
    for bad in ([-1], [1.5], [[1, 2]]):
        with pytest.raises(ValueError):
            IdFilter.of(bad)
    with pytest.raises(TypeError):
        IdFilter(np.array([1, 2]))


def test_gpu_flat_filter_path_scans_the_allowed_vectors_exactly() -> None:
    """faiss GPU indexes take no selector; their path (gather + exact scan) runs here on a CPU
    index by flagging the store as GPU-placed (the path only reconstructs by id)."""
    x = clustered(500, 16, seed=6)
    ids = np.arange(500) * 5
    index = FaissIndex(16, device="cpu", hnsw_threshold=10**9)
    index.add(ids, x)
    index._store.device = "gpu"
    allowed = ids[::7]
    scores, found = index.search(x[:20], 4, allowed=IdFilter.of(np.r_[allowed, 1]))
    assert found.tolist() == _truth(x, ids, x[:20], allowed, 4).tolist()
    np.testing.assert_allclose(scores[:, 0], np.max(x[:20] @ x[::7].T, axis=1), atol=1e-5)
