"""Backends under the VectorIndex contract: FAISS flat / HNSW, Milvus Lite and a real Milvus
server (loopback, started once per session by tests/milvus_server.py), each FLAT and HNSW.

A test takes the ``case`` fixture: ``case.make(dim)`` gives a fresh empty index of that backend,
``case.persist(index)`` saves and closes it and returns the spec that reopen.py uses to open it
again in a new process, ``case.generations()`` the Milvus generations (None for FAISS).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from indexer import FaissIndex, VectorIndex
from indexer.backends import MilvusGenerations, close, connect
from tests.milvus_server import milvus_server_uri  # noqa: F401 - session fixture

# Filtered HNSW searches allowing at most this many ids are exact scans; the suite's large
# filters allow more, so they take the graph path with a raised ef.
EXACT_FILTER_LIMIT = 500
# Milvus `id in [...]` expressions carry this many ids each: the large filters span chunks,
# so merging the per-chunk top-k is tested too.
FILTER_CHUNK = 512


@dataclass
class Case:
    """One backend configuration as the tests see it."""

    name: str
    exact: bool
    make: Callable[[int], VectorIndex]
    persist: Callable[[VectorIndex], dict[str, Any]]
    generations: Callable[[], MilvusGenerations | None] = lambda: None
    cleanups: list[Callable[[], None]] = field(default_factory=list)


CASES = [
    "faiss-flat",
    "faiss-hnsw",
    "milvus-lite-flat",
    "milvus-lite-hnsw",
    "milvus-server-flat",
    "milvus-server-hnsw",
]


def _faiss_case(name: str, tmp_path: Path) -> Case:
    kw: dict[str, Any] = (
        {"hnsw_threshold": 10**9}
        if name == "faiss-flat"
        else {"hnsw_threshold": 0, "exact_filter_limit": EXACT_FILTER_LIMIT}
    )

    def persist(index: VectorIndex) -> dict[str, Any]:
        path = tmp_path / "index.faiss"
        index.save(path)
        return {"backend": "faiss", "path": str(path), "kw": kw}

    return Case(
        name, name == "faiss-flat", lambda dim: FaissIndex(dim, device="cpu", **kw), persist
    )


def _milvus_case(name: str, uri: str) -> Case:
    flat = name.endswith("-flat")
    kw: dict[str, Any] = (
        {"index_type": "FLAT"}
        if flat
        else {"index_type": "HNSW", "exact_filter_limit": EXACT_FILTER_LIMIT}
    )
    kw["filter_chunk"] = FILTER_CHUNK
    client = connect(uri)
    gens = MilvusGenerations(client, prefix=f"t{uuid.uuid4().hex[:12]}", index_kw=kw)
    made = iter(range(10**6))

    def make(dim: int) -> VectorIndex:
        return gens.open(f"model-{next(made)}", dim)

    def persist(index: VectorIndex) -> dict[str, Any]:
        index.save(None)
        close(client, uri)
        return {"backend": "milvus", "uri": uri, "collection": index.name, "kw": kw}

    def cleanup() -> None:
        c = connect(uri)
        try:
            for coll in c.list_collections():
                if coll.startswith(gens.prefix + "_"):
                    for alias in c.list_aliases(coll).get("aliases", []):
                        c.drop_alias(alias)
                    c.drop_collection(coll)
        finally:
            close(c, uri)
            close(client, uri)

    return Case(name, flat, make, persist, lambda: gens, [cleanup])


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    """A fresh backend of each kind; Milvus collections are dropped afterwards."""
    name: str = request.param
    if name.startswith("faiss"):
        made = _faiss_case(name, tmp_path)
    elif name.startswith("milvus-lite"):
        made = _milvus_case(name, str(tmp_path / "lite.db"))
    else:
        made = _milvus_case(name, request.getfixturevalue("milvus_server_uri"))
    try:
        yield made
    finally:
        for fn in made.cleanups:
            fn()
