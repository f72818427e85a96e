"""FaissIndex: exact flat search up to a size, HNSW beyond it, on CPU or GPU, thread-safe.

Storage layouts (both are faiss id maps, so one ``faiss.write_index`` file holds everything):

- flat: ``IndexIDMap2(IndexFlatIP)`` (``GpuIndexFlatIP`` on a GPU). Removal is real on CPU; GPU
  indexes cannot remove, so there the index is rebuilt from its own vectors without the ids.
- hnsw (CPU only): ``IndexIDMap(IndexHNSWFlat)``. HNSW cannot remove either, and rebuilding a
  graph costs minutes at 1M vectors, so removed or replaced vectors are *tombstoned*: their slot
  in the id map is set to -1, which faiss already returns as "no result". Searches over-fetch by
  the number of tombstones and drop them; once tombstones exceed ``compact_ratio`` of the stored
  vectors the index is rebuilt from its live vectors. Tombstones live in the id map, so they
  survive save/load.

The index switches from flat to HNSW when it grows past ``hnsw_threshold`` (rebuilt from the
flat index's own vectors, no second copy is kept). On a GPU it stays flat: exact GPU search is
fast to ~10M vectors and faiss has no GPU HNSW.

Filtered search (``search(..., allowed=IdFilter)``) is compiled per layout:

- flat: an ``IDSelectorBatch`` over the allowed ids (faiss skips the others): exact. On a GPU,
  where faiss takes no selector, the allowed vectors are gathered and scanned exactly.
- hnsw: when few ids are allowed (at most ``exact_filter_limit``, or a fraction so small that
  the graph would need an efSearch above ``filter_ef_cap`` to find k of them), an exact scan
  of the stored vectors restricted by a selector over their slots: never worse than a flat scan
  and usually far cheaper. Otherwise HNSW with the selector and efSearch raised by
  live / allowed, so the graph walk meets as many allowed vectors as an unfiltered one does.

``search_threads`` caps the OpenMP threads of one search. FAISS splits a single query's flat
scan over every core by default; in a service that answers concurrent requests from a thread
pool that oversubscribes the cores, and on a small machine even one query alone runs slower
that way (2-core VM, 100k x 512: 25 ms on 2 threads, 20 ms on 1). OpenMP's thread count is
per calling thread, so the cap is set around each search and the caller's own value restored:
index builds in the same thread keep every core.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import faiss
import numpy as np

from indexer.filters import IdFilter
from indexer.placement import Device, new_flat_ip, resolve_device
from indexer.vector_index import PAD_ID, PAD_SCORE, check_ids, check_vectors

Kind = Literal["flat", "hnsw"]
GPU_MAX_K = 2048  # faiss GPU selection limit

# HNSW defaults, measured at 1M clustered 512-d vectors (bench/search.py, 2026-12-02, 2 loaded
# cores): efConstruction 40 caps recall@10 below 0.95 whatever efSearch costs (0.889 at ef 128,
# 0.931 at 256, 0.948 at 1024); efConstruction 200 gives 0.965 at ef 64, 0.995 at 96 and 1.000
# at 128 (1.3 ms per query). The build costs more (wall time under the same heavy machine
# load: 2,674 s at efConstruction 40, 2,831 s at 200; a quiet-box time for 200 is not measured).
HNSW_M = 32
EF_SEARCH = 128
EF_CONSTRUCTION = 200
#: Filtered HNSW searches allowing at most this many ids scan those ids exactly instead.
EXACT_FILTER_LIMIT = 20_000
#: Highest efSearch a filtered HNSW search may raise to; a sparser filter is scanned exactly.
FILTER_EF_CAP = 1024


def _search(index: Any, x: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """index.search with search parameters (a selector, efSearch).

    faiss.contrib.torch_utils (imported by pytorch-metric-learning) replaces every index's
    search with one that drops ``params``; the original stays as search_numpy.
    """
    fn = getattr(index, "search_numpy", None) or index.search
    return fn(x, k, params=params) if params is not None else fn(x, k)


def _empty(m: int) -> tuple[np.ndarray, np.ndarray]:
    """No results for m queries (padded to k by the caller)."""
    return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)


def _topk_exact(
    queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product of queries against a (small) gathered set of vectors."""
    scores = queries @ vectors.T
    kk = min(k, len(ids))
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    part_s = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_s, axis=1, kind="stable")
    return np.take_along_axis(part_s, order, axis=1), ids[np.take_along_axis(part, order, axis=1)]


def _reconstruct_n(index: faiss.Index, n: int) -> np.ndarray:
    """The first n stored vectors as a numpy array.

    pytorch-metric-learning imports faiss.contrib.torch_utils, which patches every faiss index
    class so that reconstruct_n returns torch tensors; the original stays as *_numpy.
    """
    fn = getattr(index, "reconstruct_n_numpy", None) or index.reconstruct_n
    return np.asarray(fn(0, n), dtype=np.float32)


class _Store(Protocol):
    kind: Kind
    index: Any
    dead: int

    def __len__(self) -> int: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> int: ...
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def search_allowed(
        self, queries: np.ndarray, k: int, allowed: IdFilter
    ) -> tuple[np.ndarray, np.ndarray]: ...
    def export(self) -> tuple[np.ndarray, np.ndarray]: ...


def _id_map(index: Any) -> np.ndarray:
    """A writable numpy view of a faiss id map (position -> label)."""
    return faiss.rev_swig_ptr(index.id_map.data(), index.id_map.size())


class _FlatStore:
    """Exact search through IndexIDMap2 over a flat inner-product index."""

    kind: Kind = "flat"
    dead = 0

    def __init__(self, dim: int, device: Device, index: Any = None) -> None:
        self.dim, self.device = dim, device
        self.index = index if index is not None else faiss.IndexIDMap2(new_flat_ip(dim, device))
        self._live: set[int] = set(_id_map(self.index).tolist())

    def __len__(self) -> int:
        return len(self._live)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.remove(ids)
        self.index.add_with_ids(vectors, ids)
        self._live.update(ids.tolist())

    def remove(self, ids: np.ndarray) -> int:
        hit = [i for i in ids.tolist() if i in self._live]
        if not hit:
            return 0
        if self.device == "gpu":  # GPU flat indexes cannot remove: rebuild without the ids
            all_ids, vectors = self.export()
            keep = ~np.isin(all_ids, hit)
            self.index = faiss.IndexIDMap2(new_flat_ip(self.dim, self.device))
            self.index.add_with_ids(vectors[keep], all_ids[keep])
        else:
            self.index.remove_ids(np.asarray(hit, dtype=np.int64))
        self._live.difference_update(hit)
        return len(hit)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.device == "gpu" and k > GPU_MAX_K:
            raise ValueError(f"k={k} exceeds the faiss GPU limit of {GPU_MAX_K}")
        return self.index.search(queries, k)

    def search_allowed(
        self, queries: np.ndarray, k: int, allowed: IdFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.device == "gpu":  # faiss GPU indexes take no selector: scan the allowed exactly
            hit = np.fromiter((i for i in allowed.ids.tolist() if i in self._live), np.int64)
            if not len(hit):
                return _empty(len(queries))
            index = self.index
            fn = getattr(index, "reconstruct_batch_numpy", None) or index.reconstruct_batch
            return _topk_exact(queries, np.asarray(fn(hit), dtype=np.float32), hit, k)
        sel = faiss.IDSelectorBatch(allowed.ids)  # IndexIDMap2 translates slots to ids
        return _search(self.index, queries, k, faiss.SearchParameters(sel=sel))

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.index.ntotal
        return _id_map(self.index).copy(), _reconstruct_n(self.index.index, n)


class _HnswStore:
    """Approximate search through IndexIDMap over IndexHNSWFlat, with tombstones for removal."""

    kind: Kind = "hnsw"

    def __init__(
        self,
        dim: int,
        *,
        m: int,
        ef_search: int,
        ef_construction: int,
        index: Any = None,
        exact_filter_limit: int = EXACT_FILTER_LIMIT,
        filter_ef_cap: int = FILTER_EF_CAP,
    ) -> None:
        if index is None:
            inner = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = ef_construction
            index = faiss.IndexIDMap(inner)
        self.index = index
        self.inner = faiss.downcast_index(index.index)
        self.inner.hnsw.efSearch = ef_search
        self.ef_search = ef_search
        self.exact_filter_limit = exact_filter_limit
        self.filter_ef_cap = filter_ef_cap
        labels = _id_map(index)
        self._slot = {int(i): pos for pos, i in enumerate(labels.tolist()) if i >= 0}
        self.dead = int(index.ntotal) - len(self._slot)

    def __len__(self) -> int:
        return len(self._slot)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.remove(ids)
        start = int(self.index.ntotal)
        self.index.add_with_ids(vectors, ids)
        self._slot.update(zip(ids.tolist(), range(start, start + len(ids)), strict=True))

    def remove(self, ids: np.ndarray) -> int:
        labels = _id_map(self.index)
        removed = 0
        for i in ids.tolist():
            pos = self._slot.pop(i, None)
            if pos is not None:
                labels[pos] = PAD_ID
                removed += 1
        self.dead += removed
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, min(int(self.index.ntotal), k + self.dead))

    def filtered_ef(self, allowed: int, k: int) -> int | None:
        """efSearch for a selector search allowing `allowed` ids; None: scan exactly instead."""
        if allowed <= self.exact_filter_limit:
            return None
        ef = max(self.ef_search, k, int(np.ceil(self.ef_search * len(self) / allowed)))
        return ef if ef <= self.filter_ef_cap else None

    def search_allowed(
        self, queries: np.ndarray, k: int, allowed: IdFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        ef = self.filtered_ef(len(allowed), k)
        if ef is not None:  # IndexIDMap translates slots to ids; tombstones (-1) never match
            sel = faiss.IDSelectorBatch(allowed.ids)
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
            return _search(self.index, queries, k, params)
        slots = [p for p in map(self._slot.get, allowed.ids.tolist()) if p is not None]
        if not slots:
            return _empty(len(queries))
        storage = faiss.downcast_index(self.inner.storage)  # the flat vectors, by slot
        sel = faiss.IDSelectorBatch(np.asarray(slots, dtype=np.int64))
        scores, pos = _search(storage, queries, min(k, len(slots)), faiss.SearchParameters(sel=sel))
        labels = _id_map(self.index)
        return scores, np.where(pos >= 0, labels[np.maximum(pos, 0)], PAD_ID)

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        labels = _id_map(self.index).copy()
        live = labels >= 0
        return labels[live], _reconstruct_n(self.inner, self.index.ntotal)[live]


@contextmanager
def omp_threads(n: int | None) -> Iterator[None]:
    """Run the block with at most `n` OpenMP threads in this thread (None: leave as is)."""
    if not n:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _pad(scores: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Move valid results (label >= 0) to the front of each row, keep k, pad the rest."""
    if labels.shape[1] == k and (labels >= 0).all():  # the usual case: nothing to move
        return scores, labels
    m = labels.shape[0]
    order = np.argsort(labels < 0, axis=1, kind="stable")
    labels = np.take_along_axis(labels, order, axis=1)[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)[:, :k]
    out_s = np.full((m, k), PAD_SCORE, dtype=np.float32)
    out_i = np.full((m, k), PAD_ID, dtype=np.int64)
    valid = labels >= 0
    width = labels.shape[1]
    out_s[:, :width] = np.where(valid, scores, PAD_SCORE)
    out_i[:, :width] = np.where(valid, labels, PAD_ID)
    return out_s, out_i


class FaissIndex:
    """Inner-product index over unit vectors keyed by int64 image ids (see module docstring).

    One lock guards every operation: one process owns the index and searches may come from
    many threads while ingest adds vectors.

    Example:
        >>> index = FaissIndex(4, device="cpu")
        >>> index.add(np.array([7]), np.array([[1, 0, 0, 0]], dtype=np.float32))
        >>> index.search(np.array([[1, 0, 0, 0]], dtype=np.float32), 2)[1].tolist()
        [[7, -1]]
    """

    def __init__(
        self,
        dim: int,
        *,
        hnsw_threshold: int = 100_000,
        hnsw_m: int = HNSW_M,
        ef_search: int = EF_SEARCH,
        device: str = "auto",
        ef_construction: int = EF_CONSTRUCTION,
        compact_ratio: float = 0.2,
        search_threads: int | None = None,
        exact_filter_limit: int = EXACT_FILTER_LIMIT,
        filter_ef_cap: int = FILTER_EF_CAP,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.compact_ratio = compact_ratio
        self.search_threads = search_threads
        self.exact_filter_limit = exact_filter_limit
        self.filter_ef_cap = filter_ef_cap
        self.device: Device = resolve_device(device)
        self._lock = threading.Lock()
        self._store: _Store = _FlatStore(dim, self.device)

    # -- queries ---------------------------------------------------------------------------
    @property
    def kind(self) -> Kind:
        """Either "flat" (exact) or "hnsw" (approximate)."""
        return self._store.kind

    def __len__(self) -> int:
        return len(self._store)

    def ids(self) -> np.ndarray:
        """All ids present, sorted ascending."""
        with self._lock:
            labels = _id_map(self._store.index).copy()
        return np.sort(labels[labels >= 0])

    def search(
        self, queries: np.ndarray, k: int, allowed: IdFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: scores (m, k) float32, ids (m, k) int64, padded -inf / -1.

        k may exceed the number of vectors; the extra columns are padding. With `allowed`
        only those ids are returned (see the module docstring for how that is searched).
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if allowed is not None and not isinstance(allowed, IdFilter):
            raise TypeError(f"allowed must be an IdFilter, got {type(allowed).__name__}")
        queries = self._check_vectors(queries, "queries", unit=False)
        with self._lock:
            live = len(self._store)
            if live == 0 or len(queries) == 0 or (allowed is not None and not len(allowed)):
                return _pad(
                    np.zeros((len(queries), 0), np.float32),
                    np.zeros((len(queries), 0), np.int64),
                    int(k),
                )
            with omp_threads(self.search_threads):
                if allowed is None:
                    scores, labels = self._store.search(queries, min(int(k), live))
                else:
                    kk = min(int(k), live, len(allowed))
                    scores, labels = self._store.search_allowed(queries, kk, allowed)
        return _pad(scores, labels, int(k))

    def flush(self) -> None:
        """Nothing to do: the index lives in memory and `save` writes snapshots."""

    # -- updates ---------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ids; re-adding an id replaces its vector (last one in a batch wins)."""
        ids = self._check_ids(ids)
        vectors = self._check_vectors(vectors, "vectors", unit=True)
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        if len(ids) == 0:
            return
        _, last = np.unique(ids[::-1], return_index=True)
        if len(last) != len(ids):
            keep = np.sort(len(ids) - 1 - last)
            ids, vectors = ids[keep], vectors[keep]
        with self._lock:
            if len(self._store) == 0 and self._store.dead == 0:  # bulk load: pick the kind now
                self._store = self._new_store(len(ids))
            self._store.add(ids, vectors)
            if (
                self._store.kind == "flat"
                and self.device == "cpu"
                and len(self._store) > self.hnsw_threshold
            ):
                self._rebuild_locked()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present. May trigger a compaction (HNSW)."""
        ids = np.unique(self._check_ids(ids))
        with self._lock:
            removed = self._store.remove(ids)
            ntotal = int(self._store.index.ntotal)
            if self._store.dead and self._store.dead > self.compact_ratio * ntotal:
                self._rebuild_locked()
        return removed

    def compact(self) -> None:
        """Rebuild from the live vectors: drops tombstones, re-picks flat or HNSW by size."""
        with self._lock:
            self._rebuild_locked()

    def _rebuild_locked(self) -> None:
        ids, vectors = self._store.export()
        self._store = self._new_store(len(ids))
        if len(ids):
            self._store.add(ids, vectors)

    def _new_store(self, size: int, index: Any = None) -> _Store:
        if self.device == "cpu" and size > self.hnsw_threshold:
            return _HnswStore(
                self.dim,
                m=self.hnsw_m,
                ef_search=self.ef_search,
                ef_construction=self.ef_construction,
                index=index,
                exact_filter_limit=self.exact_filter_limit,
                filter_ef_cap=self.filter_ef_cap,
            )
        return _FlatStore(self.dim, self.device, index=index)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the index as one faiss file (a GPU index is written as its CPU equivalent)."""
        with self._lock:
            if self.device == "cpu":
                _write_index(self._store.index, path)
                return
            ids, vectors = self._store.export()
        cpu = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        cpu.add_with_ids(vectors, ids)
        _write_index(cpu, path)

    @classmethod
    def load(cls, path: Path, **kw: Any) -> FaissIndex:
        """Read a file written by :meth:`save`; ``kw`` are the constructor's keyword options.

        Raises ValueError when the file is not an id-mapped flat / HNSW inner-product index, or
        when ``kw`` names a ``dim`` different from the file's.
        """
        index = faiss.read_index(str(path))  # already downcast, and it owns the C++ object
        if not isinstance(index, faiss.IndexIDMap):
            raise ValueError(f"{path}: not an id-mapped faiss index ({type(index).__name__})")
        inner = faiss.downcast_index(index.index)
        if inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"{path}: index metric is not inner product")
        dim = kw.pop("dim", inner.d)
        if dim != inner.d:
            raise ValueError(f"{path}: index has dim {inner.d}, expected {dim}")
        self = cls(inner.d, **kw)
        flat_file = isinstance(index, faiss.IndexIDMap2) and isinstance(inner, faiss.IndexFlatIP)
        if isinstance(inner, faiss.IndexHNSWFlat):
            store: _Store = _HnswStore(
                inner.d,
                m=self.hnsw_m,
                ef_search=self.ef_search,
                ef_construction=self.ef_construction,
                index=index,
                exact_filter_limit=self.exact_filter_limit,
                filter_ef_cap=self.filter_ef_cap,
            )
        elif flat_file:
            store = _FlatStore(inner.d, "cpu", index=index)
        else:
            raise ValueError(f"{path}: unsupported faiss index type {type(inner).__name__}")
        self._store = store
        if self.device != "cpu" or store.kind != self._new_store(len(store)).kind:
            self._rebuild_locked()  # place on the GPU, or re-pick flat / HNSW for this size
        return self

    # -- validation ------------------------------------------------------------------------
    def _check_ids(self, ids: np.ndarray) -> np.ndarray:
        return check_ids(ids)

    def _check_vectors(self, vectors: np.ndarray, what: str, *, unit: bool) -> np.ndarray:
        return check_vectors(vectors, self.dim, what, unit=unit)


def _write_index(index: Any, path: Path) -> None:
    """faiss.write_index through Python's file object: faiss's own FILE* writer can lose a
    short write at fclose on a full volume (seen: a truncated index.faiss whose manifest then
    matched it), while Python raises OSError(ENOSPC) on any failed write, flush or close."""
    with open(path, "wb") as fh:
        writer = faiss.PyCallbackIOWriter(fh.write)
        faiss.write_index(index, writer)
        del writer  # flushes faiss's buffer into fh before fh closes
        fh.flush()
