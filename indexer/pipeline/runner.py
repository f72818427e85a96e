"""The runner combines reader, mapper and writer into one resumable job run.

It owns no state that matters after a crash: what is done lives with the committed rows (see
writer.py), so a killed run is resumed by building a new reader (`after=cursor`, or a work
list of the keys not yet committed, which is what the Ray runner uses).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from indexer.pipeline.mapper import EmbeddedBatch, Mapper
from indexer.pipeline.reader import DecodedBatch
from indexer.pipeline.writer import Chunk, ChunkWriter


@dataclass
class RunResult:
    """What one run did; `stopped` is True when the stop event ended it early."""

    done: int = 0
    failed: int = 0
    last_key: int | None = None
    elapsed_s: float = 0.0
    stopped: bool = False

    @property
    def rate(self) -> float:
        """Items (done + failed) per second of this run."""
        return (self.done + self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0


class RunLoop:
    """The part both runners share: embedded batches -> writer, progress, stop, the result.

    Subclasses say where embedded batches come from (`embedded()`): this process's reader
    and mapper (Runner) or a Ray Data stream (ray_runner.RayRunner).
    """

    def __init__(
        self,
        writer: ChunkWriter,
        *,
        on_progress: Callable[[RunResult], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.writer = writer
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.result = RunResult()
        self._lock = threading.Lock()
        self._t0 = 0.0
        writer.subscribe(self._committed)

    def embedded(self) -> Iterator[EmbeddedBatch[Any]]:
        raise NotImplementedError

    def _committed(self, chunk: Chunk) -> None:
        with self._lock:
            self.result.done += len(chunk.keys)
            self.result.failed += len(chunk.failures)
            if chunk.last_key is not None:
                self.result.last_key = chunk.last_key
            self.result.elapsed_s = time.perf_counter() - self._t0
            snapshot = RunResult(**vars(self.result))
        if self.on_progress is not None:
            self.on_progress(snapshot)

    def run(self) -> RunResult:
        """Process every batch (or until `stop` is set); commits the tail before returning."""
        self._t0 = time.perf_counter()
        batches = self.embedded()
        try:
            for batch in batches:
                self.writer.write(batch)
                if self.stop.is_set():
                    self.result.stopped = True
                    break
            self.writer.flush()
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # a generator's finally (e.g. ending a Ray stream) runs now
            self.writer.close()
        self.result.elapsed_s = time.perf_counter() - self._t0
        return self.result


class Runner(RunLoop):
    """reader -> mapper -> writer in this process; `on_progress(result)` after each commit."""

    def __init__(
        self,
        reader: Iterable[DecodedBatch[Any]],
        mapper: Mapper,
        writer: ChunkWriter,
        *,
        on_progress: Callable[[RunResult], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(writer, on_progress=on_progress, stop=stop)
        self.reader = reader
        self.mapper = mapper

    def embedded(self) -> Iterator[EmbeddedBatch[Any]]:
        for batch in self.reader:
            yield self.mapper(batch)
