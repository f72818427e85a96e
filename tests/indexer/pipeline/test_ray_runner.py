"""The Ray runner against the in-process runner: same keys, vectors and failures; columns."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from indexer.pipeline import Chunk, ChunkWriter, Decoded, Mapper, Reader, Runner
from indexer.pipeline.columns import (
    columns_to_decoded,
    columns_to_embedded,
    decoded_to_columns,
    embedded_to_columns,
    source_pairs,
    source_rows,
)
from indexer.pipeline.ray_runner import Pool, RayRunner, plan_pool
from indexer.pipeline.reader import decode_batch
from tests.indexer.pipeline.ray_cluster import ray_cluster  # noqa: F401 - session fixture
from tests.indexer.pipeline.test_pipeline import Keys


def decode(key: int) -> Decoded:
    if key % 70 == 0:
        raise ValueError(f"broken {key}")
    return Decoded({"s": torch.full((1, 2, 2), float(key))}, meta=key)


def embed(batch: torch.Tensor) -> np.ndarray:
    """Two spaces' worth of arithmetic that any batching leaves unchanged."""
    flat = batch.flatten(1).numpy()
    return np.concatenate([flat[:, :1] * 2, flat[:, 1:2] + 1], axis=1)


def load() -> dict[str, object]:
    """The picklable factory a Ray actor calls to build its Mapper."""
    return {"s": embed, "t": lambda b: b.flatten(1)[:, :3].numpy() * -1}


def decode2(key: int):
    out = decode(key)
    return type(out)({"s": out.tensors["s"], "t": out.tensors["s"] + 1}, meta={"k": key})


def _collect(chunks: list[Chunk]) -> tuple[dict[int, tuple], list[tuple[int, str]]]:
    rows = {}
    for c in chunks:
        s, t = c.matrix("s"), c.matrix("t")
        for i, k in enumerate(c.keys):
            assert k not in rows, f"key {k} committed twice"
            rows[k] = (s[i].tolist(), t[i].tolist(), c.items[i], c.metas[i])
    failures = sorted((f.key, f.error) for c in chunks for f in c.failures)
    return rows, failures


def test_columns_round_trip_keeps_items_metas_vectors_and_failures() -> None:
    pairs = [(k, ("uid", k)) for k in (10, 70, 20)]
    assert source_pairs({c: np.array([r[c] for r in source_rows(pairs)], dtype=object)
                         for c in ("key", "item")}) == pairs  # fmt: skip
    decoded = decode_batch([(k, k) for k in (10, 70, 20)], decode2)
    back = columns_to_decoded(decoded_to_columns(decoded))
    assert back.keys == [10, 20] and back.metas == [{"k": 10}, {"k": 20}]
    assert [(f.key, f.error) for f in back.failures] == [(70, "ValueError: broken 70")]
    assert torch.equal(back.stacked("t"), decoded.stacked("t"))
    mapper = Mapper(load=load)
    direct = mapper(decoded)
    via_columns = columns_to_embedded(mapper(decoded_to_columns(decoded)))
    assert via_columns.keys == direct.keys and via_columns.failures == direct.failures
    for space in ("s", "t"):
        np.testing.assert_array_equal(via_columns.vectors[space], direct.vectors[space])
    only_failures = columns_to_embedded(
        embedded_to_columns(mapper(decode_batch([(70, 70)], decode2)))
    )
    assert only_failures.keys == [] and len(only_failures.failures) == 1


def test_mapper_takes_embedders_or_a_loader_not_both() -> None:
    with pytest.raises(ValueError, match="either"):
        Mapper({"s": embed}, load=load)
    with pytest.raises(ValueError, match="either"):
        Mapper()


@pytest.mark.parametrize(
    ("resources", "asked", "expected"),
    [
        ({"CPU": 2}, None, Pool(1)),
        ({"CPU": 2}, 2, Pool(1)),  # never every CPU: that starved the decode stage
        ({"CPU": 16}, None, Pool(15)),
        ({"CPU": 16, "GPU": 1}, None, Pool(1, gpus=1.0)),
        ({"CPU": 64, "GPU": 8}, 4, Pool(4, gpus=1.0)),
    ],
)
def test_pool_plan(resources: dict[str, float], asked: int | None, expected: Pool) -> None:
    assert plan_pool(resources, asked) == expected


def test_ray_runner_commits_what_the_local_runner_commits(ray_cluster: str) -> None:  # noqa: F811
    source = Keys(60)
    local: list[Chunk] = []
    Runner(
        Reader(source, decode2, batch_size=4, workers=2),
        Mapper(load=load),
        ChunkWriter(local.append, chunk_size=8),
    ).run()
    remote: list[Chunk] = []
    done = []
    items = [(k, k) for k in source.keys]
    from ray import cloudpickle

    here = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(here)  # Ray workers cannot import a test module
    try:
        result = RayRunner(items, decode2, load, ChunkWriter(remote.append, chunk_size=8),
                           batch_size=4, on_progress=done.append).run()  # fmt: skip
    finally:
        cloudpickle.unregister_pickle_by_value(here)
    assert _collect(remote) == _collect(local)
    assert len(_collect(remote)[0]) == 52 and len(_collect(remote)[1]) == 8
    assert (result.done, result.failed, result.last_key, result.stopped) == (52, 8, None, False)
    assert done and done[-1].done == 52  # progress after every commit
    assert all(c.last_key is None for c in remote)  # no order, so no cursor
