"""Micro-batcher: concurrent embed requests become one model call in one worker thread.

Callers (request threads, or async code via `asyncio.wrap_future`) submit one preprocessed
tensor each and get a Future of its vector. The worker takes the first waiting item plus
everything already queued behind it (up to `max_batch`), optionally waits up to `max_wait_ms`
for more, and runs the model once.

Why greedy by default (`max_wait_ms=0`): requests that arrive while the model is busy queue up
and become the next batch by themselves, so a loaded service batches without any timer, while a
lone request on an idle service goes straight to the model instead of paying the wait (which
showed up as ~5 ms of every single-photo ingest in bench/ingest.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import torch

log = logging.getLogger(__name__)

EmbedFn = Callable[[torch.Tensor], np.ndarray]
_STOP = object()


class MicroBatcher:
    """Batch single-item embed requests; `fn` maps (n, C, H, W) -> (n, dim)."""

    def __init__(
        self,
        fn: EmbedFn,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
        self._thread.start()

    def submit(self, tensor: torch.Tensor) -> Future[np.ndarray]:
        """Queue one (C, H, W) tensor; the Future resolves to its (dim,) vector."""
        fut: Future[np.ndarray] = Future()
        self._queue.put((tensor, fut))
        return fut

    def embed_many(self, tensors: list[torch.Tensor]) -> np.ndarray:
        """Submit several tensors and wait for all (they may share batches with others)."""
        futures = [self.submit(t) for t in tensors]
        return np.stack([f.result() for f in futures]) if futures else np.empty((0, 0))

    def close(self) -> None:
        """Finish queued work and stop the worker."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _collect(self, first: object) -> tuple[list[tuple[torch.Tensor, Future]], bool]:
        """`first` plus what is queued (and, with max_wait, what arrives in time); True = stop."""
        items = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(items) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:  # never blocks when nothing is left to wait for
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is _STOP:
                return items, True  # type: ignore[return-value]
            items.append(item)
        return items, False  # type: ignore[return-value]

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            items, stop = self._collect(first)
            live = [(t, f) for t, f in items if f.set_running_or_notify_cancel()]
            if not live:
                continue
            start = time.perf_counter()
            try:
                out = self._fn(torch.stack([t for t, _ in live]))
            except BaseException as exc:  # noqa: BLE001 - delivered to every waiting caller
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(live), time.perf_counter() - start)
            for i, (_, fut) in enumerate(live):
                fut.set_result(out[i])
