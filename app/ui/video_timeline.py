"""Geometry of a video's timeline, drawn by the page as inline SVG (no chart library, no JS).

The view turns the per-frame table into FrameScores and smooths them with app.video.timeline
(the same smoothing the picks came from); this module only places things: one band row per
requirement (the smoothed score of its best label over time), a quality strip of runs of
equal verdicts, time ticks and one marker per picked still.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WIDTH = 1000  # viewBox units; the SVG scales to the page width
LABEL_W = 190  # left column with the requirement names
PAD_R = 12
ROW_H = 26
ROW_GAP = 6
TOP = 6
QUALITY_H = 16
AXIS_H = 22
MAX_POINTS = 1600  # band paths are down-sampled (max per bucket) above this many frames
REVIEW_STATES = ("needs_review", "accepted", "rejected")


def clock(ms: float | int | None) -> str:
    """Milliseconds as m:ss (h:mm:ss from one hour), the way players show time."""
    if ms is None:
        return "—"
    total = int(round(float(ms) / 1000))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass(frozen=True)
class FrameRow:
    """What the timeline needs of one analysed frame."""

    t_ms: int
    ok: bool
    reason: str | None


@dataclass(frozen=True)
class PickMark:
    """What the timeline needs of one picked still."""

    image_uid: str
    requirement: str
    label: str
    rank: int
    t_ms: int
    score: float
    review: str


@dataclass(frozen=True)
class Marker:
    pick: PickMark
    x: float
    cy: float  # centre of the marker in its requirement's row

    @property
    def seconds(self) -> float:
        return self.pick.t_ms / 1000


@dataclass(frozen=True)
class Band:
    requirement: str
    name: str
    y: float  # top of the row
    path: str  # closed area path of the smoothed score (empty: no frame scored)
    peak: float
    markers: tuple[Marker, ...]

    @property
    def text_y(self) -> float:
        return self.y + ROW_H / 2 + 4


@dataclass(frozen=True)
class Run:
    x: float
    w: float
    reason: str | None  # None: kept
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Tick:
    x: float
    text: str


@dataclass(frozen=True)
class Timeline:
    duration_ms: int
    bands: tuple[Band, ...]
    runs: tuple[Run, ...]
    ticks: tuple[Tick, ...]
    quality_y: float
    axis_y: float
    height: float
    threshold: float  # least smoothed score of a pick, drawn as a dashed line per row

    @property
    def x0(self) -> float:
        return LABEL_W

    @property
    def plot_w(self) -> float:
        return WIDTH - LABEL_W - PAD_R

    @property
    def width(self) -> int:
        return WIDTH

    @property
    def markers(self) -> list[Marker]:
        return [m for band in self.bands for m in band.markers]

    def threshold_y(self, band: Band) -> float:
        return round(band.y + ROW_H - self.threshold * (ROW_H - 2), 1)


def _x(t_ms: float, duration_ms: int) -> float:
    share = min(max(t_ms / duration_ms, 0.0), 1.0) if duration_ms > 0 else 0.0
    return round(LABEL_W + share * (WIDTH - LABEL_W - PAD_R), 1)


def _downsample(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points; each bucket keeps its time start and its highest score
    (a short peak must stay visible: that is where the picks come from)."""
    if len(t) <= MAX_POINTS:
        return t, s
    edges = np.linspace(0, len(t), MAX_POINTS + 1).astype(int)
    return t[edges[:-1]], np.maximum.reduceat(s, edges[:-1])


def _area(t_ms: np.ndarray, score: np.ndarray, y: float, duration_ms: int) -> str:
    if len(t_ms) == 0:
        return ""
    t, s = _downsample(t_ms, np.clip(np.nan_to_num(score), 0.0, 1.0))
    bottom = y + ROW_H
    pts = [
        f"{_x(ti, duration_ms)},{round(bottom - si * (ROW_H - 2), 1)}"
        for ti, si in zip(t, s, strict=True)
    ]
    first, last = _x(t[0], duration_ms), _x(t[-1], duration_ms)
    return f"M{first},{bottom} L" + " L".join(pts) + f" L{last},{bottom} Z"


def _runs(frames: Sequence[FrameRow], step_ms: int, duration_ms: int) -> list[Run]:
    """Consecutive frames with the same verdict as one rectangle each (a frame lasts until
    the next one; the last one `step_ms`)."""
    runs: list[Run] = []
    for i, frame in enumerate(frames):
        reason = None if frame.ok else (frame.reason or "rejected")
        end = frames[i + 1].t_ms if i + 1 < len(frames) else frame.t_ms + step_ms
        end = min(end, max(duration_ms, frame.t_ms))
        if runs and runs[-1].reason == reason:
            runs[-1] = Run(0, 0, reason, runs[-1].start_ms, end)
        else:
            runs.append(Run(0, 0, reason, frame.t_ms, end))
    out = []
    for run in runs:
        x = _x(run.start_ms, duration_ms)
        w = max(round(_x(run.end_ms, duration_ms) - x, 1), 0.6)
        out.append(Run(x, w, run.reason, run.start_ms, run.end_ms))
    return out


def _tick_step(duration_s: float) -> int:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration_s / step <= 10:
            return step
    return 7200


def _ticks(duration_ms: int) -> list[Tick]:
    step = _tick_step(duration_ms / 1000)
    count = int(duration_ms / 1000 // step)
    at = [i * step * 1000 for i in range(count + 1)]
    return [Tick(_x(ms, duration_ms), clock(ms)) for ms in at]


def build(
    *,
    duration_ms: int,
    frames: Sequence[FrameRow],
    requirements: Sequence[tuple[str, str, np.ndarray]],
    picks: Sequence[PickMark],
    step_ms: int,
    threshold: float,
) -> Timeline:
    """Place the timeline. `requirements` are (id, name, smoothed score per frame of
    `frames`) in the standard's order; `frames` are sorted by time."""
    duration_ms = max(duration_ms, frames[-1].t_ms + step_ms if frames else 0, 1)
    t_ms = np.array([f.t_ms for f in frames], dtype=np.float64)
    bands = []
    for row, (req_id, name, values) in enumerate(requirements):
        y = TOP + row * (ROW_H + ROW_GAP)
        score = np.nan_to_num(np.asarray(values, dtype=np.float64))
        mine = sorted((p for p in picks if p.requirement == req_id), key=lambda p: p.rank)
        markers = tuple(Marker(p, _x(p.t_ms, duration_ms), y + ROW_H / 2) for p in mine)
        peak = float(score.max()) if len(score) else 0.0
        bands.append(Band(req_id, name, y, _area(t_ms, score, y, duration_ms), peak, markers))
    quality_y = TOP + len(requirements) * (ROW_H + ROW_GAP) + 4
    axis_y = quality_y + QUALITY_H + 4
    return Timeline(
        duration_ms=duration_ms,
        bands=tuple(bands),
        runs=tuple(_runs(frames, step_ms, duration_ms)),
        ticks=tuple(_ticks(duration_ms)),
        quality_y=quality_y,
        axis_y=axis_y,
        height=axis_y + AXIS_H,
        threshold=threshold,
    )
