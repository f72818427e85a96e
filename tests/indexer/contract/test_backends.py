"""open_index and the Milvus naming / connection rules (on Milvus Lite: no server needed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from indexer import FaissIndex
from indexer.backends import close, collection_name, connect, is_lite_uri, open_index
from indexer.milvus_index import MilvusIndex


def test_faiss_backend_is_the_in_process_index() -> None:
    index = open_index("faiss", dim=8, device="cpu", hnsw_threshold=5)
    assert isinstance(index, FaissIndex) and index.dim == 8 and index.hnsw_threshold == 5


def test_bad_backend_arguments_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown vector backend"):
        open_index("qdrant", dim=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model_id"):
        open_index("milvus", dim=8, uri=str(tmp_path / "x.db"))
    with pytest.raises(ValueError, match="needs a URI"):
        open_index("milvus", dim=8, model_id="m")
    with pytest.raises(ValueError, match=r"ending in \.db"):
        connect(str(tmp_path / "vectors"))


def test_uri_kinds() -> None:
    assert is_lite_uri("var/milvus.db") and is_lite_uri("/abs/x.db")
    assert not is_lite_uri("http://127.0.0.1:19530") and not is_lite_uri("HTTPS://milvus:443")


def test_collection_names_are_valid_and_keep_long_model_ids_apart() -> None:
    a = collection_name("dinov2-vits14-reg4:v1")
    b = collection_name("dinov2-vits14-reg4:v2")  # same first 16 characters
    assert a != b
    for name in (a, b, collection_name("x" * 300, prefix="site7")):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name)
    assert a.startswith("endoseek_dinov2_vits14_re")


def test_lite_collection_per_model_is_created_then_reopened(tmp_path: Path) -> None:
    uri = str(tmp_path / "sub" / "v.db")  # the parent folder is created
    client = connect(uri)
    try:
        index = open_index("milvus", dim=4, model_id="m1", client=client)
        assert isinstance(index, MilvusIndex) and index.index_type == "FLAT"
        index.add(np.array([3]), np.array([[0, 1, 0, 0]], dtype=np.float32))
        again = open_index("milvus", dim=4, model_id="m1", client=client)
        assert len(again) == 1 and again.collection == index.collection
        with pytest.raises(ValueError, match="dim 4, expected 8"):
            open_index("milvus", dim=8, model_id="m1", client=client)
        with pytest.raises(LookupError):
            MilvusIndex(client, "no_such_collection")
        with pytest.raises(ValueError, match="limit"):
            index.search(np.zeros((1, 4), np.float32), 20_000)
        with pytest.raises(ValueError, match="L2-normalised"):
            index.add(np.array([1]), np.ones((1, 4), np.float32))
    finally:
        close(client, uri)
