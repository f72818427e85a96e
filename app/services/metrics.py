"""Prometheus metrics of one service instance (own registry, so tests can run many apps)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STEPS = ("decode", "write", "embed", "database", "index")
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Per-step timings, batch sizes, counts; exported as Prometheus text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.step_seconds = Histogram(
            "endoseek_step_seconds",
            "Time per pipeline step (decode, write, embed, database, index).",
            ["step", "op"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "endoseek_embed_batch_size",
            "Images per model call (micro-batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "endoseek_model_call_seconds",
            "Time of one batched model call.",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "endoseek_images_ingested_total",
            "Images stored (duplicates excluded).",
            registry=self.registry,
        )
        self.searches = Counter(
            "endoseek_searches_total", "Searches served.", registry=self.registry
        )
        self.index_size = Gauge(
            "endoseek_index_vectors", "Vectors in the live index.", registry=self.registry
        )
        self.spool_files = Gauge(
            "endoseek_dicom_spool_instances",
            "DICOM instances in the C-STORE spool: acknowledged and waiting (pending), or "
            "refused at ingest and kept for an operator (failed).",
            ["state"],
            registry=self.registry,
        )

    @contextmanager
    def step(self, name: str, op: str = "ingest") -> Iterator[None]:
        """Time a block as one observation of step `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(name, time.perf_counter() - start, op)

    def observe(self, name: str, seconds: float, op: str = "ingest") -> None:
        """One observation of step `name` (for steps that do not fit one block)."""
        self.step_seconds.labels(name, op).observe(seconds)

    def on_batch(self, size: int, seconds: float) -> None:
        """Callback for the micro-batcher."""
        self.batch_size.observe(size)
        self.model_seconds.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
