"""Batches as columns of plain values, the form Ray Data moves between its stages.

Ray blocks need one schema for every batch, whatever it holds (all failures, one space or
two), and app items (uuids, tuples) are not Arrow types. So every batch is the same five
columns: `key` (int64) plus `item`, `meta`, `error` and `payload`, where item, meta and payload
are pickled bytes and `error` is "" for a decoded item. The payload is the decoded tensors
per space before the mapper and the vectors per space after it (b"" for a failure).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from indexer.pipeline.mapper import EmbeddedBatch
from indexer.pipeline.reader import DecodedBatch, Failure

Columns = dict[str, np.ndarray]
COLUMNS = ("key", "item", "meta", "error", "payload")


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _objects(values: Iterable[Any]) -> np.ndarray:
    values = list(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def source_rows(pairs: Iterable[tuple[int, Any]]) -> list[dict[str, Any]]:
    """The work list as rows for `ray.data.from_items`: key and pickled item."""
    return [{"key": int(k), "item": _dumps(item)} for k, item in pairs]


def source_pairs(cols: Mapping[str, np.ndarray]) -> list[tuple[int, Any]]:
    """Back from `source_rows` columns to (key, item) pairs."""
    return [(int(k), pickle.loads(i)) for k, i in zip(cols["key"], cols["item"], strict=True)]


def _frame(keys: list[int], items: list[Any], metas: list[Any], payloads: list[bytes],
           failures: list[Failure]) -> Columns:  # fmt: skip
    return {
        "key": np.asarray(keys + [f.key for f in failures], dtype=np.int64),
        "item": _objects(_dumps(i) for i in items + [f.item for f in failures]),
        "meta": _objects([_dumps(m) for m in metas] + [_dumps(None)] * len(failures)),
        "error": _objects([""] * len(keys) + [f.error for f in failures]),
        "payload": _objects(payloads + [b""] * len(failures)),
    }


def _rows(cols: Mapping[str, np.ndarray]) -> Iterable[tuple[int, Any, Any, str, bytes]]:
    for key, item, meta, error, payload in zip(*(cols[c] for c in COLUMNS), strict=True):
        yield int(key), pickle.loads(item), pickle.loads(meta), str(error), bytes(payload)


def _unpack(
    cols: Mapping[str, np.ndarray], out: DecodedBatch[Any] | EmbeddedBatch[Any]
) -> Iterator[dict[str, np.ndarray]]:
    """Fill `out`'s keys, items, metas and failures; yield each success's {space: array}."""
    for key, item, meta, error, payload in _rows(cols):
        if error:
            out.failures.append(Failure(key, item, error))
            continue
        out.keys.append(key)
        out.items.append(item)
        out.metas.append(meta)
        yield pickle.loads(payload)


def decoded_to_columns(batch: DecodedBatch[Any]) -> Columns:
    """A decoded batch as columns; the payload is {space: (C, H, W) float array} per item."""
    spaces = list(batch.tensors)
    payloads = [
        _dumps({s: batch.tensors[s][i].numpy() for s in spaces}) for i in range(len(batch.keys))
    ]
    return _frame(batch.keys, batch.items, batch.metas, payloads, batch.failures)


def columns_to_decoded(cols: Mapping[str, np.ndarray]) -> DecodedBatch[Any]:
    """Back to a DecodedBatch (no `last_key`: Ray keeps no order, so there is no cursor)."""
    out: DecodedBatch[Any] = DecodedBatch()
    for arrays in _unpack(cols, out):
        for space, array in arrays.items():
            out.tensors.setdefault(space, []).append(torch.from_numpy(array))
    return out


def embedded_to_columns(batch: EmbeddedBatch[Any]) -> Columns:
    """An embedded batch as columns; the payload is {space: (dim,) float32 vector} per item."""
    payloads = [_dumps({s: v[i] for s, v in batch.vectors.items()}) for i in range(len(batch.keys))]
    return _frame(batch.keys, batch.items, batch.metas, payloads, batch.failures)


def columns_to_embedded(cols: Mapping[str, np.ndarray]) -> EmbeddedBatch[Any]:
    """Back to an EmbeddedBatch with stacked (n, dim) vectors per space."""
    out: EmbeddedBatch[Any] = EmbeddedBatch()
    rows: dict[str, list[np.ndarray]] = {}
    for vectors in _unpack(cols, out):
        for space, vector in vectors.items():
            rows.setdefault(space, []).append(vector)
    out.vectors = {s: np.stack(v).astype(np.float32, copy=False) for s, v in rows.items()}
    return out


def is_columns(batch: object) -> bool:
    """True for a Ray numpy batch (a mapping of columns) rather than a pipeline batch."""
    return isinstance(batch, Mapping) and "payload" in batch and "key" in batch
