"""Open a persisted index in a fresh process and print what it answers, as JSON.

    python -m tests.indexer.contract.reopen '<spec json>'

The spec comes from ``Case.persist`` (conftest.py) plus the data parameters; the queries and
the filter are regenerated here from the same seeds, so only numbers cross the process line.
"""

from __future__ import annotations

import json
import sys

from indexer import FaissIndex, IdFilter, VectorIndex
from indexer.backends import close, connect
from indexer.milvus_index import MilvusIndex
from tests.indexer.contract.data import answers, dataset


def open_spec(spec: dict) -> tuple[VectorIndex, object]:
    """The index the spec names, and the client to close afterwards (None for FAISS)."""
    if spec["backend"] == "faiss":
        return FaissIndex.load(spec["path"], device="cpu", **spec["kw"]), None
    client = connect(spec["uri"])
    return MilvusIndex(client, spec["collection"], **spec["kw"]), client


def main() -> None:
    spec = json.loads(sys.argv[1])
    data = dataset(spec["dim"])
    index, client = open_spec(spec)
    try:
        out = answers(index, data.queries, IdFilter.of(spec["allowed"]))
    finally:
        if client is not None:
            close(client, spec["uri"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
