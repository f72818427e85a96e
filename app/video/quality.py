"""A weight-free quality gate for sampled video frames: keep the informative ones, say why not.

30-40 % of a colonoscopy's frames show nothing useful (blur, darkness, glare, the room before
insertion); a documentation still must never be one of them, and the embedding model was not
trained to say so. These are cheap hand features, computed inside the field of view only
(embedder/fov.py; the black surround and the text burned into it would otherwise count as
"dark" and as sharp edges), on a copy reduced to at most `side` pixels a side.

Reasons, checked in this order (the first that fails is the reason):
- out_of_body: too little of the lit picture is mucosa-coloured (red/orange/pink dominant):
  the scope is outside (grey/green/blue room, drapes, gloves).
- dark: most of the picture is near-black (underexposed, lumen filling the view, scope cap).
- overexposed: most of the picture is near-white (too close to the wall, light at maximum).
- glare: a large share is specular (bright and colourless): reflections hide the mucosa.
- blur: little fine detail for the coarse structure there is (motion or defocus blur).
- low_texture: no structure at any scale (a flat wall, fluid, a view filled with bubbles' film).

Each feature has a "goodness" in [0, 1] that is 0.5 exactly at its threshold; the score is
the lowest of them, so ok frames score >= 0.5 and rejected ones < 0.5, and among ok frames the
score ranks how far the worst feature is from trouble.

A frame without a dark surround (fov.py finds none: a full-frame picture, or too dark to tell)
is judged whole; it is not called out_of_body for that alone, since a room seen through the
scope keeps the processor's round mask and some endoscopes show full-frame pictures.

Cost, measured on the shared 2-core box under load (~7-9, so pessimistic): 8-9 ms a 448x252
frame, 110-120 frames per CPU-second: fov.py's mask ~4 ms (found at 112 px for that reason),
the features ~5 ms. At the default 2 frames/s of video a 1080p30 clip costs ~15x more to
decode than to judge. Thresholds were set on synthetic videos (tests/app/video/factory.py, six
seeds, 320x240 to 1280x720) and the nine real HyperKvasir photos; see each field's comment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from embedder.fov import field_of_view

REASONS = ("out_of_body", "dark", "overexposed", "glare", "blur", "low_texture")


@dataclass(frozen=True)
class QualityVerdict:
    ok: bool
    reason: str | None  # one of REASONS when not ok
    score: float  # in [0, 1], higher is better; >= 0.5 exactly when ok
    features: dict[str, float]


def _high_is_bad(value: float, limit: float) -> float:
    """0.5 at the limit, 1 at 0, 0 at twice the limit."""
    return min(1.0, max(0.0, 1.0 - 0.5 * value / limit)) if limit > 0 else 1.0


def _low_is_bad(value: float, limit: float, octaves: float = 2.0) -> float:
    """0.5 at the limit, 1 at limit * 2**octaves, 0 at limit / 2**octaves (log scale)."""
    if value <= 0:
        return 0.0
    return min(1.0, max(0.0, 0.5 + 0.5 * math.log2(value / limit) / octaves))


@dataclass(frozen=True)
class QualityGate:
    """Thresholds (see the module docstring for the reasons they guard against)."""

    side: int = 224  # features on a copy reduced to this (blur still visible at this size)
    fov_min_side: int = 48  # the FOV mask is found at half that size unless it gets below this
    min_red: float = 0.2  # share of the lit picture that is mucosa-coloured: a room scores
    # ~0, a dyed colon (blue patches) >= 0.28, the real photos >= 0.85
    min_lit: float = 0.3  # below this share of lit picture there is no colour to judge (the
    # frame is dark, washed out or glare: those reasons say so)
    dark_level: int = 40  # brightest channel below this is near-black (8-bit)
    max_dark: float = 0.7  # a dark lumen covers up to ~30 % of a good view; 70 % is no view
    bright_level: int = 235  # luminance above this is near-white
    max_overexposed: float = 0.5  # half the picture washed out
    max_glare: float = 0.1  # specular share: the real photos have up to 7 %, synthetic views
    # < 1 %; reflections over 10 % hide the mucosa
    glare_level: int = 230  # specular: brightest channel above this ...
    glare_saturation: float = 0.16  # ... and nearly colourless (saturation below 40/255)
    min_sharpness: float = 3.0  # ~1 / edge width (see _detail): the real photos >= 4.4, the
    # synthetic views mostly >= 3.5 (a smooth bleeding view down to 2.5), a gaussian blur of
    # 1/20 of the frame height (motion blur) <= 2.7
    min_texture: float = 1.9  # band-pass std in grey levels: a flat wall <= 1.5, blurred views
    # >= 4.2, synthetic views >= 2.3 (a smooth dyed colon), the real photos >= 6.6
    erode: int = 6  # FOV edge pixels left out of texture measures (fov.py widens its mask ~4 px)

    def judge(self, rgb: np.ndarray) -> QualityVerdict:
        """The verdict for one RGB frame (H, W, 3 uint8), judged inside its field of view."""
        img = Image.fromarray(np.ascontiguousarray(rgb))
        factor = max(1, math.ceil(max(img.size) / self.side))
        if factor > 1:
            img = img.reduce(factor)
        mask = self._field_of_view(img)
        features = self._features(img, mask)
        features["content"] = float(mask.mean())
        goodness = {
            "out_of_body": _high_is_bad(1.0 - features["red"], 1.0 - self.min_red),
            "dark": _high_is_bad(features["dark"], self.max_dark),
            "overexposed": _high_is_bad(features["overexposed"], self.max_overexposed),
            "glare": _high_is_bad(features["glare"], self.max_glare),
            "blur": _low_is_bad(features["sharpness"], self.min_sharpness),
            "low_texture": _low_is_bad(features["texture"], self.min_texture),
        }
        if features["lit"] < self.min_lit:  # little lit: no colour to judge, it is simply dark
            goodness["out_of_body"] = 1.0
        failed = {
            "out_of_body": features["lit"] >= self.min_lit and features["red"] < self.min_red,
            "dark": features["dark"] > self.max_dark,
            "overexposed": features["overexposed"] > self.max_overexposed,
            "glare": features["glare"] > self.max_glare,
            "blur": features["texture"] >= self.min_texture
            and features["sharpness"] < self.min_sharpness,
            "low_texture": features["texture"] < self.min_texture,
        }
        if features["texture"] < self.min_texture:
            goodness["blur"] = 1.0  # nothing to be sharp: low_texture says it
        reason = next((r for r in REASONS if failed[r]), None)
        score = min(goodness.values())
        if reason is not None:
            score = min(score, 0.499)
        else:
            score = max(score, 0.5)
        return QualityVerdict(reason is None, reason, round(float(score), 4), features)

    def _field_of_view(self, img: Image.Image) -> np.ndarray:
        """embedder/fov.py's mask (all True without a surround), found on a copy at half the
        feature size: most of the gate's time is the mask, and it only needs the outline."""
        w, h = img.size
        small = img.reduce(2) if min(w, h) >= 2 * self.fov_min_side else img
        fov = field_of_view(small)
        if fov is None:
            return np.ones((h, w), bool)
        if small is not img:
            fov = np.repeat(np.repeat(fov, 2, axis=0), 2, axis=1)
            fov = np.pad(
                fov, ((0, max(0, h - fov.shape[0])), (0, max(0, w - fov.shape[1]))), "edge"
            )
            fov = fov[:h, :w]
        return fov

    def _features(self, img: Image.Image, mask: np.ndarray) -> dict[str, float]:
        a = np.asarray(img, dtype=np.int32)
        r, g, b = a[..., 0], a[..., 1], a[..., 2]
        v = np.maximum(np.maximum(r, g), b)
        lo = np.minimum(np.minimum(r, g), b)
        n = max(int(mask.sum()), 1)
        luma = (299 * r + 587 * g + 114 * b) // 1000
        dark = (v < self.dark_level) & mask
        specular = (v > self.glare_level) & ((v - lo) < self.glare_saturation * v) & mask
        lit = mask & ~dark & ~specular
        n_lit = int(lit.sum())
        # mucosa colour: red the strongest channel, clearly above green (pink, red, orange)
        warm = (r >= b) & (r * 100 >= g * 115) & lit
        texture, sharpness = _detail(luma.astype(np.float32), mask & ~dark, self.erode)
        return {
            "red": float(warm.sum() / n_lit) if n_lit else 0.0,
            "lit": n_lit / n,
            "dark": float(dark.sum() / n),
            "overexposed": float(((luma > self.bright_level) & mask).sum() / n),
            "glare": float(specular.sum() / n),
            "texture": texture,
            "sharpness": sharpness,
        }


def _smooth(num: np.ndarray, den: np.ndarray, size: int) -> np.ndarray:
    """A box mean over the mask only (normalised convolution): the black surround does not
    pull the FOV's edge towards black, which would read as strong structure."""
    return ndimage.uniform_filter(num, size) / np.maximum(ndimage.uniform_filter(den, size), 1e-3)


def _detail(grey: np.ndarray, mask: np.ndarray, erode: int) -> tuple[float, float]:
    """(texture, sharpness) measured within `mask` (lit picture), away from its edge.

    texture: the std of a band-pass (a 9 px box mean minus a 33 px one, over the mask only):
    folds, vessels, edges, not the vignetting; a flat wall has none, and a blurred view keeps
    most of it (its detail is finer), which tells blur from low texture.
    sharpness: the 99th percentile of the gradient magnitude over that texture. An edge of
    height h blurred by sigma has a steepest gradient ~h / (2.5 sigma) while its band-pass
    energy barely depends on sigma, so the ratio is ~1 / edge width, whatever the brightness
    or contrast (the std of a Laplacian, the usual focus measure, also falls with smooth
    content and failed to separate smooth sharp views from blurred ones)."""
    m = mask.astype(np.float32)
    inner = ndimage.uniform_filter(m, 2 * erode + 1) > 0.999  # eroded by `erode` pixels
    if inner.sum() < 64:
        return 0.0, 0.0
    gm = grey * m
    band = (_smooth(gm, m, 9) - _smooth(gm, m, 33))[inner]
    texture = float(band.std())
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    steep = float(np.percentile(np.hypot(gx, gy)[inner[1:-1, 1:-1]], 99))
    return texture, steep / max(texture, 1.0)
