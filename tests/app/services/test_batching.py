"""MicroBatcher: an idle model runs a lone request at once; a busy one batches what queues up."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from app.services.batching import MicroBatcher
from tests.timing import scaled

WAIT_S = scaled(60)  # generous bound for results (x ENDOSEEK_TEST_TIME_FACTOR); no sleeps


class GatedModel:
    """fn for the batcher: records batch sizes; the first call blocks until `release`."""

    def __init__(self, gate_first: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not gate_first:
            self.release.set()

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        self.sizes.append(batch.shape[0])
        self.entered.set()
        assert self.release.wait(WAIT_S)
        return batch.flatten(1).sum(dim=1, keepdim=True).numpy()


def test_lone_request_runs_alone_by_default() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch=8)
    assert batcher.max_wait == 0  # greedy: no timer unless the operator asks for one
    try:
        vec = batcher.submit(torch.full((1, 2, 2), 2.0)).result(timeout=WAIT_S)
    finally:
        batcher.close()
    assert model.sizes == [1]
    assert vec.tolist() == [8.0]


def test_requests_queued_while_busy_become_one_batch() -> None:
    model = GatedModel(gate_first=True)
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=0)
    try:
        first = batcher.submit(torch.zeros(1, 1, 1))
        assert model.entered.wait(WAIT_S)  # the model is busy with the first request
        rest = [batcher.submit(torch.full((1, 1, 1), float(i))) for i in range(6)]
        model.release.set()
        values = [f.result(timeout=WAIT_S).item() for f in [first, *rest]]
    finally:
        batcher.close()
    assert values == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # each caller gets its own vector
    assert model.sizes == [1, 4, 2]  # queued work batched, capped at max_batch


def test_max_wait_collects_requests_that_arrive_in_time() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch=3, max_wait_ms=60_000)
    try:
        futures = [batcher.submit(torch.ones(1, 1, 1)) for _ in range(3)]
        assert [f.result(timeout=WAIT_S).item() for f in futures] == [1.0, 1.0, 1.0]
    finally:
        batcher.close()
    assert model.sizes == [3]  # a full batch runs at once, long before the wait ends


def test_model_error_reaches_every_caller_and_the_batcher_goes_on() -> None:
    calls = []

    def flaky(batch: torch.Tensor) -> np.ndarray:
        calls.append(batch.shape[0])
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return np.zeros((batch.shape[0], 1), dtype=np.float32)

    batcher = MicroBatcher(flaky, max_batch=4)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            batcher.submit(torch.ones(1, 1, 1)).result(timeout=WAIT_S)
        assert batcher.submit(torch.ones(1, 1, 1)).result(timeout=WAIT_S).tolist() == [0.0]
    finally:
        batcher.close()
