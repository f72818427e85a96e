"""MilvusIndex: the VectorIndex contract over one Milvus collection (Lite file or a server).

Several API workers and hosts can share one Milvus server, which FAISS in-process cannot give.
The collection holds only ``id`` (INT64 primary key, the image id) and ``vector``
(FLOAT_VECTOR, inner product); everything filterable stays in the database (see
indexer/filters.py), so the collection can always be rebuilt from it.

Rules learned the hard way (../shared/research/scale-out.md):

- writes are always ``upsert``: a server keeps both rows when a primary key is inserted twice
  (Milvus Lite silently replaces it), and the contract says add = upsert;
- reads ask for consistency ``Strong`` by default (a server defaults to Bounded, so a search
  right after an upsert could miss it; Lite ignores the level);
- the vector index is created before the first insert, and "index already exists" (code 35,
  e.g. a retried CreateIndex whose build finished) counts as success.

Id filters compile to ``id in [...]`` expressions, chunked (``filter_chunk`` ids each) with the
per-chunk top-k merged, which is exact on a FLAT collection. HNSW collections do not take the
expression: Milvus's filtered HNSW search misses neighbours (measured on server 2.3.5, 20k x 512:
recall@10 0.26 with 50 ids allowed, 0.73 with 10 %, and fewer than k rows returned; Lite: 0.55
with 4 % at 100k). So on HNSW a filter of at most ``exact_filter_limit`` ids is answered
exactly from those ids' vectors, fetched by primary key, and a larger one by an unfiltered
search over-fetching ``overfetch`` x k x live / allowed rows (ef as large), filtered here, with
the over-fetch grown until every query has k allowed hits or Milvus's limit of 16,384 rows is
reached. The exact fetch costs about 0.5 ms per allowed id (pymilvus decodes each vector;
server 2.3.5: 50 ids 24 ms, 400 ids 199 ms, 2,000 ids 1.1 s), hence the limit of 1,000; the
over-fetch reached recall@10 0.97-1.0 at 10-100 % allowed. A FLAT collection answers every
filter exactly on the server (12 ms for 400 ids of 20k x 512).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from indexer.filters import IdFilter
from indexer.vector_index import PAD_ID, PAD_SCORE, check_ids, check_vectors

log = logging.getLogger(__name__)

IndexType = Literal["FLAT", "HNSW"]
Consistency = Literal["Strong", "Session", "Bounded", "Eventually"]
ID_FIELD, VECTOR_FIELD = "id", "vector"
MAX_TOPK = 16_384  # Milvus's limit on k (and on a query's limit)
INDEX_EXISTS = 35  # Milvus error code: index already exists
COUNT_TTL_S = 30.0  # how long a filtered HNSW search may reuse the collection's row count


class MilvusIndex:
    """One Milvus collection (or an alias of one) as a VectorIndex; thread-safe via pymilvus.

    ``name`` may be an alias: reads and writes then follow the alias (see indexer/backends.py).
    With ``dim`` given and no such collection, the collection is created with the index
    ``index_type``; without ``dim`` it must exist and its dimension is read back.
    """

    def __init__(
        self,
        client: MilvusClient,
        name: str,
        dim: int | None = None,
        *,
        index_type: IndexType = "FLAT",
        hnsw_m: int = 32,
        ef_construction: int = 128,
        ef_search: int = 128,
        consistency: Consistency = "Strong",
        search_consistency: Consistency | None = None,
        exact_filter_limit: int = 1_000,
        overfetch: float = 3.0,
        filter_chunk: int = 16_384,
        batch_rows: int = 2_000,
        description: str = "",
    ) -> None:
        self.client, self.name = client, name
        index_type = index_type.upper()  # type: ignore[assignment]  # settings may say "hnsw"
        self.ef_search, self.consistency = ef_search, consistency
        # searches may trade freshness for latency: Strong waits for the server's time tick
        # (~200 ms per search on Milvus 2.3 defaults, bench/http_search.py)
        self.search_consistency = search_consistency or consistency
        self.exact_filter_limit, self.overfetch = exact_filter_limit, overfetch
        self.filter_chunk, self.batch_rows = filter_chunk, batch_rows
        self._count: tuple[float, int] | None = None  # (monotonic time, rows) for ef sizing
        if not client.has_collection(name):
            if dim is None:
                raise LookupError(f"Milvus collection {name!r} does not exist")
            self._create(dim, index_type, hnsw_m, ef_construction, description)
        info = client.describe_collection(name)
        field = next(f for f in info["fields"] if f["name"] == VECTOR_FIELD)
        found_dim = int(field["params"]["dim"])
        if dim is not None and dim != found_dim:
            raise ValueError(f"Milvus collection {name!r} has dim {found_dim}, expected {dim}")
        self.dim = found_dim
        self.collection = str(info.get("collection_name", name))
        self.index_type = self._ensure_index(index_type, hnsw_m, ef_construction)
        client.load_collection(name)

    # -- setup -----------------------------------------------------------------------------
    def _create(
        self, dim: int, index_type: IndexType, m: int, ef_construction: int, description: str
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description=description
        )
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        self.client.create_collection(
            self.name,
            schema=schema,
            index_params=self._index_params(index_type, m, ef_construction),
            consistency_level=self.consistency,
        )

    def _index_params(self, index_type: IndexType, m: int, ef_construction: int) -> Any:
        params = self.client.prepare_index_params()
        extra = {"M": m, "efConstruction": ef_construction} if index_type == "HNSW" else {}
        params.add_index(
            field_name=VECTOR_FIELD, index_type=index_type, metric_type="IP", params=extra
        )
        return params

    def _ensure_index(self, index_type: IndexType, m: int, ef_construction: int) -> str:
        """The vector index's type; created now when missing ("already exists" = success)."""
        if VECTOR_FIELD not in self.client.list_indexes(self.name):
            try:
                self.client.create_index(
                    self.name, self._index_params(index_type, m, ef_construction)
                )
            except MilvusException as exc:
                if exc.code != INDEX_EXISTS:
                    raise
        desc = self.client.describe_index(self.name, VECTOR_FIELD)
        return str(desc.get("index_type", index_type)).upper()

    # -- updates ---------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert vectors under ids (the last of duplicate ids in one batch wins)."""
        ids = self._check_ids(ids)
        vectors = self._check_vectors(vectors, "vectors", unit=True)
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        _, last = np.unique(ids[::-1], return_index=True)
        if len(last) != len(ids):
            keep = np.sort(len(ids) - 1 - last)
            ids, vectors = ids[keep], vectors[keep]
        for start in range(0, len(ids), self.batch_rows):
            rows = [
                {ID_FIELD: int(i), VECTOR_FIELD: v}
                for i, v in zip(
                    ids[start : start + self.batch_rows].tolist(),
                    vectors[start : start + self.batch_rows],
                    strict=True,
                )
            ]
            self.client.upsert(self.name, rows)

    def remove(self, ids: np.ndarray) -> int:
        """Delete ids; returns how many of them were present."""
        ids = np.unique(self._check_ids(ids))
        present = 0
        for chunk in _chunks(ids, self.filter_chunk):
            present += len(self._existing(chunk))
            self.client.delete(self.name, filter=_in_expr(chunk))
        return present

    def _existing(self, ids: np.ndarray) -> list[int]:
        rows = self.client.query(
            self.name,
            filter=_in_expr(ids),
            output_fields=[ID_FIELD],
            consistency_level=self.consistency,
        )
        return [int(r[ID_FIELD]) for r in rows]

    def flush(self) -> None:
        """Seal the collection's growing segments so every write so far is persisted."""
        self.client.flush(self.name)

    def save(self, path: Path | None = None) -> None:
        """Flush (the server persists; `path` is ignored, there is no snapshot file)."""
        self.flush()

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        rows = self.client.query(
            self.name, filter="", output_fields=["count(*)"], consistency_level=self.consistency
        )
        count = int(rows[0]["count(*)"])
        self._count = (time.monotonic(), count)
        return count

    def _approx_len(self) -> int:
        """The row count, up to COUNT_TTL_S old: sizes ef only, so a count query (a round trip
        that waits for consistency) is not paid on every filtered search."""
        if self._count is None or time.monotonic() - self._count[0] > COUNT_TTL_S:
            return max(len(self), 1)
        return max(self._count[1], 1)

    def ids(self) -> np.ndarray:
        """All ids present, sorted ascending (paged through a query iterator)."""
        out: list[int] = []
        it = self.client.query_iterator(
            self.name,
            batch_size=MAX_TOPK,
            filter="",
            output_fields=[ID_FIELD],
            consistency_level=self.consistency,
        )
        try:
            while batch := it.next():
                out.extend(int(r[ID_FIELD]) for r in batch)
        finally:
            it.close()
        return np.unique(np.asarray(out, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, allowed: IdFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: scores (m, k) float32, ids (m, k) int64, padded -inf / -1."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > MAX_TOPK:
            raise ValueError(f"k={k} exceeds Milvus's limit of {MAX_TOPK}")
        if allowed is not None and not isinstance(allowed, IdFilter):
            raise TypeError(f"allowed must be an IdFilter, got {type(allowed).__name__}")
        queries = self._check_vectors(queries, "queries", unit=False)
        k = int(k)
        if len(queries) == 0 or (allowed is not None and not len(allowed)):
            return _padded([[] for _ in queries], k)
        if allowed is None:
            return _padded(self._search(queries, k, None, self.ef_search), k)
        if self.index_type == "FLAT":
            hits = self._search_chunks(queries, k, allowed, self.ef_search)
            return _padded(hits, k)
        if len(allowed) <= self.exact_filter_limit:
            return self._search_exact(queries, k, allowed)
        return _padded(self._search_overfetch(queries, k, allowed), k)

    def _search(
        self, queries: np.ndarray, k: int, expr: str | None, ef: int
    ) -> list[list[tuple[float, int]]]:
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.index_type == "HNSW":
            params["params"] = {"ef": max(ef, k)}
        res = self.client.search(
            self.name,
            data=queries,
            limit=k,
            filter=expr or "",
            output_fields=[ID_FIELD],
            search_params=params,
            consistency_level=self.search_consistency,
        )
        return [[(float(h["distance"]), int(h["id"])) for h in hits] for hits in res]

    def _search_chunks(
        self, queries: np.ndarray, k: int, allowed: IdFilter, ef: int
    ) -> list[list[tuple[float, int]]]:
        """One filtered search per chunk of allowed ids; keep the best k of their union."""
        merged: list[list[tuple[float, int]]] = [[] for _ in queries]
        for chunk in allowed.chunks(self.filter_chunk):
            found = self._search(queries, min(k, len(chunk)), _in_expr(chunk), ef)
            for row, hits in zip(merged, found, strict=True):
                row.extend(hits)
        return [heapq.nlargest(k, row) for row in merged]

    def _search_overfetch(
        self, queries: np.ndarray, k: int, allowed: IdFilter
    ) -> list[list[tuple[float, int]]]:
        """Unfiltered HNSW search of enough rows to hold k allowed ones, filtered here."""
        live = self._approx_len()
        limit = min(MAX_TOPK, max(k, int(np.ceil(self.overfetch * k * live / len(allowed)))))
        while True:
            hits = self._search(queries, limit, None, max(self.ef_search, limit))
            kept = []
            for row in hits:
                ok = allowed.mask(np.fromiter((i for _, i in row), np.int64, len(row)))
                kept.append([hit for hit, keep in zip(row, ok.tolist(), strict=True) if keep][:k])
            exhausted = all(len(row) < limit for row in hits)  # the whole collection was seen
            if exhausted or limit >= MAX_TOPK or all(len(row) >= k for row in kept):
                return kept
            limit = min(MAX_TOPK, limit * 4)

    def _search_exact(
        self, queries: np.ndarray, k: int, allowed: IdFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the allowed ids' own vectors, fetched by primary key."""
        ids, vecs = [], []
        for chunk in allowed.chunks(self.filter_chunk):
            for r in self.client.query(
                self.name,
                filter=_in_expr(chunk),
                output_fields=[ID_FIELD, VECTOR_FIELD],
                consistency_level=self.consistency,
            ):
                ids.append(int(r[ID_FIELD]))
                vecs.append(np.asarray(r[VECTOR_FIELD], dtype=np.float32))
        if not ids:
            return _padded([[] for _ in queries], k)
        scores = queries @ np.vstack(vecs).T
        hits = [heapq.nlargest(k, zip(row.tolist(), ids, strict=True)) for row in scores]
        return _padded(hits, k)

    # -- validation ------------------------------------------------------------------------
    def _check_ids(self, ids: np.ndarray) -> np.ndarray:
        return check_ids(ids)

    def _check_vectors(self, vectors: np.ndarray, what: str, *, unit: bool) -> np.ndarray:
        return check_vectors(vectors, self.dim, what, unit=unit)


def _chunks(ids: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _in_expr(ids: np.ndarray) -> str:
    """A Milvus boolean expression selecting these primary keys (ids are validated ints)."""
    return f"{ID_FIELD} in [{','.join(map(str, np.asarray(ids, dtype=np.int64).tolist()))}]"


def _padded(hits: list[list[tuple[float, int]]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (score, id), best first, as (scores, ids) arrays padded to k with -inf / -1."""
    scores = np.full((len(hits), k), PAD_SCORE, dtype=np.float32)
    ids = np.full((len(hits), k), PAD_ID, dtype=np.int64)
    for row, found in enumerate(hits):
        for col, (score, image_id) in enumerate(found[:k]):
            scores[row, col], ids[row, col] = score, image_id
    return scores, ids
