"""The Ray Data runner: the same decode, the same Mapper and the same commit, over a cluster.

read (the work list, from the driver) -> decode (CPU tasks) -> embed (an actor pool of the
one `Mapper` class, a GPU per actor when the cluster has GPUs) -> the driver, which commits
each batch from `iter_batches` through the same ChunkWriter and commit function as the
in-process runner. Ray keeps no order, so there is no cursor: the caller passes the keys not
yet committed (set-based resume), and a killed run simply leaves fewer of them.

Ray is an optional dependency (`pip install 'endoseek[ray]'`); it is imported only here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.pipeline import columns
from indexer.pipeline.mapper import EmbeddedBatch, EmbedFn, Mapper
from indexer.pipeline.reader import Decoded, decode_batch
from indexer.pipeline.runner import RunLoop, RunResult
from indexer.pipeline.writer import ChunkWriter

MAX_BLOCKS = 200  # read blocks; each decode task takes one


@dataclass(frozen=True)
class Pool:
    """The embed stage's actor pool: `actors` actors with `gpus` and `cpus` each."""

    actors: int
    gpus: float = 0.0
    cpus: float = 1.0


def plan_pool(resources: Mapping[str, float], actors: int | None = None) -> Pool:
    """One actor per GPU when the cluster has GPUs, else one per CPU but one.

    With GPUs, decode runs as separate CPU tasks feeding the GPU actors. On CPUs alone Ray
    fuses decode into the actors (same resources), which suits a CPU model: it costs far more
    than the decode. Actors never take every CPU: a pool that did starved the stage feeding it
    (2 actors on a 2-CPU cluster hung), so one CPU stays free for that and the driver.
    """
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus:
        return Pool(actors or gpus, gpus=1.0, cpus=1.0)
    n = actors or cpus - 1
    return Pool(max(1, min(n, cpus - 1)), gpus=0.0, cpus=1.0)


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to the cluster at `address`, or start a local one; reuse one already joined.

    Only a session this call started is shut down at the end.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def _decode_stage(
    cols: dict[str, np.ndarray], decode: Callable[[Any], Decoded]
) -> dict[str, np.ndarray]:
    """A Ray task: (key, item) rows -> decoded columns (failures recorded, never raised)."""
    return columns.decoded_to_columns(decode_batch(columns.source_pairs(cols), decode))


class RayRunner(RunLoop):
    """Run `items` through decode -> Mapper actors on Ray; the driver writes every batch.

    `decode` and `load` must be picklable (they run in Ray workers); `load()` returns the
    embed functions and is called once per actor.
    """

    def __init__(
        self,
        items: Sequence[tuple[int, Any]],
        decode: Callable[[Any], Decoded],
        load: Callable[[], Mapping[str, EmbedFn]],
        writer: ChunkWriter,
        *,
        batch_size: int = 64,
        pool: Pool | None = None,
        on_progress: Callable[[RunResult], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(writer, on_progress=on_progress, stop=stop)
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.items = items
        self.decode = decode
        self.load = load
        self.batch_size = batch_size
        self.pool = pool

    def embedded(self) -> Iterator[EmbeddedBatch[Any]]:
        if not self.items:
            return  # nothing to do: no Ray execution (its fixed cost is ~20 s)
        import ray
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        pool = self.pool or plan_pool(ray.cluster_resources())
        rows = columns.source_rows(self.items)
        blocks = max(1, min(MAX_BLOCKS, math.ceil(len(rows) / self.batch_size)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        ds = ds.map_batches(
            _decode_stage,
            fn_kwargs={"decode": self.decode},
            batch_size=self.batch_size,
            batch_format="numpy",
            num_cpus=1,
        )
        ds = ds.map_batches(
            Mapper,
            fn_constructor_kwargs={"load": self.load},
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_gpus=pool.gpus or None,
            num_cpus=pool.cpus,
            batch_size=self.batch_size,
            batch_format="numpy",
        )
        for cols in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            yield columns.columns_to_embedded(cols)
