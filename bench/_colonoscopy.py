"""A long synthetic colonoscopy video for the video benchmark, built cheaply and cached.

WHY its own renderer: tests/app/video/factory.py renders every frame with an affine warp
(right for 10-30 s test clips, minutes of CPU for 30,000 1080p frames). Here each interval's
still is generated and converted to YUV 4:2:0 once, at 1.5x the picture height, and every
frame is an integer-offset window of it (a smooth pan, up to ~10 px per frame) pasted into
the black surround: composing a 1080p frame costs a few milliseconds, and the encoder
(libx264 `ultrafast`, CRF 23, 2 s GOP, yuv420p, 25 frames/s) sets the pace. The stills and
their defects (blur, dark, glare, out of body) come from the test factory, so the quality
gate sees the same kinds as in the tests.

The script repeats a 150 s withdrawal pattern (compressed into a shorter clip): plain mucosa,
blur, dark, the caecum, glare, the ileum, with out-of-body at the start and the end. The file
is cached under the cache folder by name (length, size, rate, version): built once, reused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.app.video.factory import DEFAULT_CLASSES, scene_still, with_defect  # tests' renderers

VERSION = 1  # bump when the rendering changes: the cache key changes with it
FPS = 25
CRF = 23
GOP_S = 2
VARIANTS = 3  # distinct stills per kind (cycles reuse them)
PATTERN: tuple[tuple[str, float], ...] = (
    ("plain", 20),
    ("blur", 6),
    ("plain", 14),
    ("dark", 4),
    ("cecum", 16),
    ("plain", 24),
    ("glare", 6),
    ("ileum", 16),
    ("plain", 30),
    ("blur", 4),
    ("plain", 10),
)  # 150 s
EDGE = ("out_of_body", 10.0)


@dataclass(frozen=True)
class Clip:
    path: Path
    seconds: float
    size: tuple[int, int]
    fps: int
    bitrate_mbps: float
    script: tuple[tuple[str, float], ...]


def script_for(seconds: float) -> list[tuple[str, float]]:
    """Out of body, the pattern repeated, out of body: exactly `seconds` long."""
    edge = min(EDGE[1], seconds / 6)
    out: list[tuple[str, float]] = [(EDGE[0], edge)]
    left = seconds - 2 * edge
    length = sum(s for _, s in PATTERN)
    if left < length:  # a short clip (smoke runs): the whole pattern, compressed
        out += [(kind, s * left / length) for kind, s in PATTERN]
        left = 0
    while left > 1e-6:
        for kind, s in PATTERN:
            take = min(s, left)
            if take <= 1e-6:
                break
            out.append((kind, take))
            left -= take
    out.append((EDGE[0], edge))
    return out


def _planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB -> Y, U, V planes of yuv420p (FFmpeg's conversion, limited range)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    yuv = frame.reformat(format="yuv420p")
    out = []
    for plane in yuv.planes:
        buf = np.frombuffer(bytes(plane), np.uint8).reshape(plane.height, plane.line_size)
        out.append(buf[:, : plane.width].copy())
    return out[0], out[1], out[2]


def _sources(
    script: list[tuple[str, float]], side: int, seed: int
) -> dict[tuple[str, int], tuple[np.ndarray, ...]]:
    """(kind, variant) -> YUV planes of its still with its defect, each built once."""
    out: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}
    counts: dict[str, int] = {}
    for kind, _ in script:
        variant = counts.get(kind, 0) % VARIANTS
        counts[kind] = counts.get(kind, 0) + 1
        if (kind, variant) in out:
            continue
        rng = np.random.default_rng([seed, VARIANTS * len(out) + variant])
        still: Image.Image = scene_still(kind, rng, side, DEFAULT_CLASSES)
        still = with_defect(kind, still.convert("RGB"), rng)
        out[(kind, variant)] = _planes(np.asarray(still))
    return out


def _offset(t: float, slack: int, phase: float, period: float) -> int:
    """A smooth pan position in [0, slack], even (4:2:0 chroma stays aligned)."""
    v = slack / 2 * (1 + math.sin(2 * math.pi * t / period + phase))
    return int(v) // 2 * 2


def build(path: Path, seconds: float, size: tuple[int, int], *, seed: int = 0) -> Clip:
    """Render and encode the clip to `path` (written under a temporary name, then renamed)."""
    w, h = size
    side = int(h * 1.5) // 2 * 2
    slack = side - h
    script = script_for(seconds)
    sources = _sources(script, side, seed)
    black_y, black_c = 16, 128
    y = np.full((h, w), black_y, np.uint8)
    u = np.full((h // 2, w // 2), black_c, np.uint8)
    v = np.full((h // 2, w // 2), black_c, np.uint8)
    x0 = (w - h) // 2 // 2 * 2
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(FPS)
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(
            "libx264", rate=rate, options={"preset": "ultrafast", "crf": str(CRF)}
        )
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = GOP_S * FPS
        stream.codec_context.thread_count = 0
        n = 0
        counts: dict[str, int] = {}
        for number, (kind, s) in enumerate(script):
            variant = counts.get(kind, 0) % VARIANTS
            counts[kind] = counts.get(kind, 0) + 1
            sy, su, sv = sources[(kind, variant)]
            for _ in range(round(s * FPS)):
                t = n / FPS
                ox = _offset(t, slack, 0.7 * number, 9.0)
                oy = _offset(t, slack, 1.3 * number + 1.0, 7.0)
                y[:, x0 : x0 + h] = sy[oy : oy + h, ox : ox + h]
                u[:, x0 // 2 : (x0 + h) // 2] = su[oy // 2 : (oy + h) // 2, ox // 2 : (ox + h) // 2]
                v[:, x0 // 2 : (x0 + h) // 2] = sv[oy // 2 : (oy + h) // 2, ox // 2 : (ox + h) // 2]
                packed = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
                frame = av.VideoFrame.from_ndarray(packed, format="yuv420p")
                frame.pts, frame.time_base = n, 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    real = n / FPS
    return Clip(path, real, size, FPS, path.stat().st_size * 8 / real / 1e6, tuple(script))


def cached(cache: Path, seconds: float, size: tuple[int, int]) -> Clip:
    """The clip for (seconds, size) from `cache`, built on first use."""
    name = f"colonoscopy-v{VERSION}-{seconds:g}s-{size[0]}x{size[1]}-{FPS}fps-crf{CRF}.mp4"
    path = cache / name
    script = tuple(script_for(seconds))
    if path.exists():
        real = sum(round(s * FPS) for _, s in script) / FPS
        return Clip(path, real, size, FPS, path.stat().st_size * 8 / real / 1e6, script)
    return build(path, seconds, size)
