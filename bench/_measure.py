"""Timing helpers: paired rounds that make ratios robust to a noisy machine.

On a shared machine the speed of the same code drifts by tens of percent within minutes, so a
ratio of two medians taken minutes apart can say anything. Every ratio the benchmarks report is
the median of per-round ratios, where each round measures the reference and the service back
to back.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(
    reference: Callable[[], float], measured: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """Run reference then measured `rounds` times; each returns its own figure."""
    refs, meas = [], []
    for _ in range(rounds):
        refs.append(reference())
        meas.append(measured())
    return refs, meas


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median of the per-round ratios num[i] / den[i]."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))


def median_diff(a: list[float], b: list[float]) -> float:
    """Median of the per-round differences a[i] - b[i]."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True))
