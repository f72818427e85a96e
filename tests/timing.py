"""Test deadlines derive from one factor, so a busy machine slows tests instead of failing them."""

from __future__ import annotations

import os

FACTOR = float(os.environ.get("ENDOSEEK_TEST_TIME_FACTOR", "1") or 1)


def scaled(seconds: float) -> float:
    """`seconds` times ENDOSEEK_TEST_TIME_FACTOR (set it above 1 on a slow or loaded box)."""
    return seconds * FACTOR
