"""Rates with the number behind them and a Wilson 95 % interval.

Quality committees compare rates of small groups (one room, one month): a bare percentage of
3 procedures looks as firm as one of 300. The Wilson score interval stays inside [0, 1] and
keeps a sensible width at 0 % and 100 %, where the textbook Wald interval collapses to a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (n > 0)."""
    if n <= 0:
        raise ValueError("the interval needs at least one trial")
    if not 0 <= k <= n:
        raise ValueError(f"successes {k} outside 0..{n}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # exact bounds at the edges (rounding must not put 0 % outside its own interval)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """k of n procedures; rate and interval are None when no procedure is behind them."""

    k: int
    n: int

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.k, self.n) if self.n else None
