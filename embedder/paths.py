"""Where the shipped bundles live; a leaf module, so settings can name the default bundle
without importing torch."""

from __future__ import annotations

from pathlib import Path

BASELINE_BUNDLE = "baseline-colour-texture"


def default_bundle_path() -> Path:
    """The weight-free baseline bundle shipped inside the package (works fully offline)."""
    return Path(__file__).resolve().parent / "bundles" / BASELINE_BUNDLE
