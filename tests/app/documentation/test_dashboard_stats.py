"""Wilson 95 % intervals against SciPy's implementation, and their edges."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from app.documentation.dashboard_stats import Rate, wilson_interval


@pytest.mark.parametrize("n", [1, 2, 5, 13, 40, 250])
def test_wilson_matches_scipy_for_every_k(n: int) -> None:
    for k in range(n + 1):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        low, high = wilson_interval(k, n)
        assert low == pytest.approx(ci.low, abs=1e-9), (k, n)
        assert high == pytest.approx(ci.high, abs=1e-9), (k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_is_not_a_point_at_0_and_100_percent() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35  # Wald would say [0, 0]
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and 0.65 < low < 0.75


def test_wider_with_fewer_procedures() -> None:
    small, large = wilson_interval(3, 4), wilson_interval(75, 100)
    assert small[1] - small[0] > 2 * (large[1] - large[0])


def test_rate_without_procedures_has_no_rate_and_no_interval() -> None:
    assert Rate(0, 0).rate is None and Rate(0, 0).ci is None
    assert Rate(3, 4).rate == 0.75 and Rate(3, 4).ci == wilson_interval(3, 4)


@pytest.mark.parametrize(("k", "n"), [(-1, 3), (4, 3), (0, 0)])
def test_bad_counts_are_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n)
