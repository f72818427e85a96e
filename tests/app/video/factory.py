"""Synthetic procedure videos for tests: landmark and bad segments at known times.

No endoscopy video can be shipped or downloaded, so a video is rendered: each landmark
interval shows one generated still of its synthetic class (training/synthetic.py, drawn at
twice the frame height, its own seed) seen through a moving camera (smooth pan, zoom and a
small rotation), so consecutive frames differ as in a real withdrawal; bad intervals show
landmark-free mucosa (the "synthetic-vessels" class) with the defect applied: gaussian blur,
near-black, large specular blobs, over-exposure, a flat texture-free wall, or an out-of-body
room scene (grey/green, no red). Encoded with PyAV (libx264 ultrafast, yuv420p, one frame per
1/fps); a 20 s 320x240 clip builds in about a CPU-second.

Robustness fixtures (truncated, VFR, odd size, rotation metadata, HEVC, audio only, zero
length, non-video) are small builders below.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from app.cli.demo import LANDMARKS
from training.synthetic import generate_image

BAD_KINDS = ("blur", "dark", "glare", "out_of_body", "overexposed", "low_texture")
PLAIN = "plain"  # landmark-free mucosa, good quality
MUCOSA_CLASS = "synthetic-vessels"  # the synthetic class used as landmark-free mucosa
DEFAULT_CLASSES: dict[str, str] = {label: klass for klass, label in LANDMARKS.items()}
ENCODERS = {
    "h264": "libx264",
    "hevc": "libx265",
    "mpeg4": "mpeg4",
    "mpeg2video": "mpeg2video",
    "mjpeg": "mjpeg",
    "vp9": "libvpx-vp9",
    "av1": "libsvtav1",
}
_OPTIONS = {
    "libx264": {"preset": "ultrafast"},
    "libx265": {"preset": "ultrafast", "log-level": "error"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "libsvtav1": {"preset": "12"},
}


@dataclass(frozen=True)
class Interval:
    """[start_s, end_s) of the video showing `kind`: a landmark label or a bad kind/plain."""

    start_s: float
    end_s: float
    kind: str

    def contains(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


@dataclass(frozen=True)
class SyntheticVideo:
    path: Path
    intervals: tuple[Interval, ...]
    fps: float
    size: tuple[int, int]  # (width, height)

    def kind_at(self, t_s: float) -> str | None:
        for interval in self.intervals:
            if interval.contains(t_s):
                return interval.kind
        return None


def encoder_available(codec: str) -> bool:
    """Whether this PyAV build can encode `codec` (a key of ENCODERS)."""
    try:
        av.Codec(ENCODERS.get(codec, codec), "w")
    except Exception:  # noqa: BLE001 - av raises several kinds for an unknown codec
        return False
    return True


# --- rendering ---------------------------------------------------------------------------


def _room(rng: np.random.Generator, side: int) -> Image.Image:
    """An operating-room view: grey walls, green drapes, a blue-grey lamp; no red."""
    img = Image.new("RGB", (side, side), (120, 124, 128))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = (int(v) for v in rng.integers(0, side, 2))
        w, h = (int(v) for v in rng.integers(side // 8, side // 2, 2))
        grey = int(rng.integers(70, 200))
        colour = [
            (grey, grey, grey + 8),
            (40, int(rng.integers(110, 160)), 90),
            (90, 120, int(rng.integers(140, 190))),
        ][int(rng.integers(0, 3))]
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    noise = rng.normal(0, 4, (side, side, 1))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def _circle_mask(side: int) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).ellipse([side * 0.03, side * 0.03, side * 0.97, side * 0.97], fill=255)
    return mask.filter(ImageFilter.GaussianBlur(1))


def scene_still(
    kind: str, rng: np.random.Generator, side: int, classes: Mapping[str, str]
) -> Image.Image:
    """The large still an interval is filmed from."""
    if kind == "out_of_body":
        room = _room(rng, side)
        black = Image.new("RGB", (side, side))
        return Image.composite(room, black, _circle_mask(side))
    if kind in classes:
        return generate_image(classes[kind], rng, side)
    if kind == "low_texture":  # a flat wall filling the view: mucosa colour, vignetting only
        colour = np.array([205, 112, 100], np.float32) * rng.uniform(0.85, 1.1)
        axis = np.linspace(-1, 1, side, dtype=np.float32)
        r2 = axis[None, :] ** 2 + axis[:, None] ** 2
        flat = np.clip(colour * (1.0 - 0.3 * r2)[..., None], 0, 255).astype(np.uint8)
        return Image.composite(
            Image.fromarray(flat), Image.new("RGB", (side, side)), _circle_mask(side)
        )
    if kind == PLAIN or kind in BAD_KINDS:
        return generate_image(MUCOSA_CLASS, rng, side)
    raise ValueError(f"unknown kind {kind!r}: not a landmark of {sorted(classes)} nor {BAD_KINDS}")


def with_defect(kind: str, frame: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Apply a bad kind's defect to one rendered frame (inside its field of view)."""
    side = min(frame.size)
    if kind == "blur":
        return frame.filter(ImageFilter.GaussianBlur(side / 20))  # motion blur
    if kind == "dark":
        return Image.fromarray((np.asarray(frame, np.float32) * 0.12).astype(np.uint8))
    if kind == "overexposed":
        a = np.asarray(frame, np.float32)
        lit = a.max(axis=2, keepdims=True) > 20
        return Image.fromarray(np.where(lit, np.clip(a * 3 + 90, 0, 255), a).astype(np.uint8))
    if kind == "glare":
        out = frame.copy()
        draw = ImageDraw.Draw(out)
        w, h = frame.size
        for _ in range(6):
            cx = w / 2 + rng.uniform(-0.25, 0.25) * side
            cy = h / 2 + rng.uniform(-0.25, 0.25) * side
            rx, ry = rng.uniform(0.08, 0.15, 2) * side
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=(252, 252, 250))
        return out.filter(ImageFilter.GaussianBlur(0.8))
    return frame


def _camera(still: Image.Image, size: tuple[int, int], u: float, phase: np.ndarray) -> Image.Image:
    """The frame at relative time u in [0, 1]: a rotated, panned, zoomed view of the still,
    square in the middle of a black frame (the endoscope's picture beside its black surround)."""
    w, h = size
    side = still.size[0]
    zoom = 0.8 + 0.15 * (0.5 + 0.5 * math.sin(2 * math.pi * (0.6 * u + phase[0])))  # view share
    angle = math.radians(8.0 * math.sin(2 * math.pi * (0.5 * u + phase[1])))
    slack = (1.0 - zoom) / 2 * side
    cx = side / 2 + slack * math.sin(2 * math.pi * (0.7 * u + phase[2]))
    cy = side / 2 + slack * math.cos(2 * math.pi * (0.8 * u + phase[3]))
    view = min(w, h)
    scale = zoom * side / view  # still pixels per output pixel
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # output (x, y) -> still (cos*x' - sin*y' + cx, sin*x' + cos*y' + cy), x' = x - view/2
    a, b, d, e = cos, -sin, sin, cos
    c = cx - a * view / 2 - b * view / 2
    f = cy - d * view / 2 - e * view / 2
    square = still.transform(
        (view, view), Image.Transform.AFFINE, (a, b, c, d, e, f), resample=Image.Resampling.BILINEAR
    )
    frame = Image.new("RGB", (w, h))
    frame.paste(square, ((w - view) // 2, (h - view) // 2))
    return frame


def _render(
    script: Sequence[tuple[str, float]],
    fps: float,
    size: tuple[int, int],
    seed: int,
    classes: Mapping[str, str],
) -> tuple[list[Interval], Iterable[np.ndarray]]:
    intervals: list[Interval] = []
    plan: list[tuple[int, str, int]] = []  # (interval number, kind, frames)
    first = 0
    for number, (kind, seconds) in enumerate(script):
        n = max(1, round(seconds * fps))
        intervals.append(Interval(first / fps, (first + n) / fps, kind))
        plan.append((number, kind, n))
        first += n

    def frames() -> Iterable[np.ndarray]:
        for number, kind, n in plan:
            rng = np.random.default_rng([seed, number, sum(map(ord, kind))])
            still = scene_still(kind, rng, 2 * min(size), classes)
            phase = rng.random(4)
            for i in range(n):
                frame = _camera(still, size, i / max(n - 1, 1), phase)
                yield np.asarray(with_defect(kind, frame, rng))

    return intervals, frames()


def render(
    script: Sequence[tuple[str, float]],
    *,
    fps: float = 10,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    classes: Mapping[str, str] | None = None,
) -> tuple[list[Interval], Iterable[np.ndarray]]:
    """The intervals and the RGB frames (lazily) that procedure_video encodes."""
    return _render(script, fps, size, seed, DEFAULT_CLASSES if classes is None else classes)


def encode(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float = 10,
    codec: str = "h264",
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    pts_ms: Sequence[int] | None = None,
    faststart: bool = True,
) -> Path:
    """Encode RGB frames with PyAV. `rotation` is written as the display matrix (degrees
    counter-clockwise, FFmpeg's convention); `pts_ms` gives each frame its own time (VFR).
    MP4/MOV get their index (moov) first unless `faststart` is False, as web uploads do: a
    truncated copy stays decodable up to the cut."""
    path = Path(path)
    name = ENCODERS.get(codec, codec)
    rate = Fraction(fps).limit_denominator(1001)
    iso = path.suffix.lower() in (".mp4", ".mov", ".m4v")
    options = {"movflags": "+faststart"} if iso and faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(name, rate=rate, options=_OPTIONS.get(name, {}))
        stream.pix_fmt = pix_fmt
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            if i == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), Fraction(1, 1000)
            else:
                frame.pts, frame.time_base = i, 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def procedure_video(
    path: Path,
    script: Sequence[tuple[str, float]],
    *,
    fps: float = 10,
    size: tuple[int, int] = (320, 240),
    codec: str = "h264",
    seed: int = 0,
    classes: Mapping[str, str] | None = None,
) -> SyntheticVideo:
    """Render and encode `script` [(kind, seconds), ...]: a kind is a landmark label (mapped
    to a synthetic class by `classes`, default app.cli.demo.LANDMARKS inverted), "plain", or a
    bad kind of BAD_KINDS. Deterministic for a seed."""
    classes = DEFAULT_CLASSES if classes is None else classes
    intervals, frames = _render(script, fps, size, seed, classes)
    encode(path, frames, fps=fps, codec=codec)
    return SyntheticVideo(Path(path), tuple(intervals), float(fps), size)


# --- robustness fixtures -----------------------------------------------------------------


def truncated_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    """The first `fraction` of the bytes of `src` (an interrupted recording or upload)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def vfr_video(
    path: Path, pts_ms: Sequence[int], *, size: tuple[int, int] = (320, 240), seed: int = 0
) -> Path:
    """A variable-frame-rate clip: frame i is shown at pts_ms[i] (a 1/1000 time base)."""
    _, frames = _render([(PLAIN, len(pts_ms) / 10)], 10, size, seed, DEFAULT_CLASSES)
    return encode(path, list(frames)[: len(pts_ms)], fps=10, pts_ms=pts_ms)


def odd_size_video(
    path: Path, *, size: tuple[int, int] = (321, 241), seconds: float = 2, seed: int = 0
) -> Path:
    """Odd width and height: 4:2:0 needs even sizes, so encoded as yuv444p."""
    _, frames = _render([(PLAIN, seconds)], 10, size, seed, DEFAULT_CLASSES)
    return encode(path, frames, fps=10, pix_fmt="yuv444p")


def rotated_video(
    path: Path, rotation: int, *, size: tuple[int, int] = (320, 240), seconds: float = 2
) -> Path:
    """A clip with a display matrix (`rotation` degrees counter-clockwise, FFmpeg's sign), and
    a white band on the encoded frame's left edge, to see where the rotation puts it."""

    def frames() -> Iterable[np.ndarray]:
        for i in range(round(seconds * 10)):
            a = np.full((size[1], size[0], 3), 60 + i, np.uint8)
            a[:, : size[0] // 8] = 255
            yield a

    return encode(path, frames(), fps=10, rotation=rotation)


def hevc_video(path: Path, *, seconds: float = 2, size: tuple[int, int] = (320, 240)) -> Path:
    """An HEVC clip (the caller skips when encoder_available("hevc") is False)."""
    _, frames = _render([(PLAIN, seconds)], 10, size, 0, DEFAULT_CLASSES)
    return encode(path, frames, fps=10, codec="hevc")


def audio_only(path: Path, *, seconds: float = 1.0) -> Path:
    """An AAC-only file (a voice memo named like a video): no video stream."""
    rate = 44100
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.sin(np.arange(int(rate * seconds)) * 2 * np.pi * 440 / rate)
        block = 1024
        for start in range(0, len(samples), block):
            chunk = samples[start : start + block].astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def zero_length(path: Path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def jpeg_named_mp4(path: Path) -> Path:
    """A JPEG photo with a video's name."""
    generate_image(MUCOSA_CLASS, np.random.default_rng(0), 64).save(path, format="JPEG")
    return Path(path)


def random_bytes(path: Path, n: int = 50_000) -> Path:
    Path(path).write_bytes(np.random.default_rng(0).bytes(n))
    return Path(path)
