"""Cheap image quality for choosing the clearest of equally scored photos.

Sharpness is the variance of a 4-neighbour Laplacian of the grey image (blur flattens it);
exposure penalises dark and blown-out frames. Computed on the small stored thumbnail, so
choosing among tied photos costs a few milliseconds each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of a 2-D float image in [0, 1]."""
    lap = (
        -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    )
    return float(lap.var())


def exposure(grey: np.ndarray) -> float:
    """Within the field of view (the black border ignored): 1 for mid-grey and unclipped,
    towards 0 for dark or blown-out frames."""
    fov = grey > 0.04
    if fov.mean() < 0.05:
        return 0.0
    inside = grey[fov]
    clipped = float((inside > 0.96).mean())
    return (1.0 - clipped) * (1.0 - abs(float(inside.mean()) - 0.5))


def image_quality(image: Image.Image) -> float:
    """Sharpness times exposure (higher is clearer); only comparable between photos."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    return sharpness(grey) * exposure(grey)


def file_quality(path: Path) -> float:
    """image_quality of an image file (0.0 when it cannot be read)."""
    try:
        with Image.open(path) as img:
            return image_quality(img)
    except (OSError, ValueError):
        return 0.0
