"""Sample frames from a video at a fixed analysis rate: one sequential decode, no random seeks.

P and B frames cannot be skipped, so sampling at 2 frames/s still decodes every frame (about
2-3x real time for 1080p H.264 on one core, ../shared/research/video.md); only the sampled
frames are converted to RGB, scaled by swscale straight to the analysis size.

The grid rule. Grid point i sits at time i / rate. A decoded frame is given the first grid
index above the previous decoded frame's time (0 for the stream's first frame) when its own
time has reached that grid point; a frame that covers several grid points (a gap, a variable
frame rate) takes the first of them, and the grid jumps past its time. Since a frame's index
depends only on its own and its predecessor's time, a run resumed at `start_index=n` (seek to a
keyframe before n / rate, decode forward) yields exactly the frames a full run yields from n
on: same index, time and pixels.

Times are presentation timestamps relative to the stream start, in exact fractions; a frame
without a timestamp gets its predecessor's time plus one nominal frame duration.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from app.video.probe import OPEN_OPTIONS

_INTERPOLATION = "AREA"  # swscale area averaging: a clean downscale, cheap at 2 frames/s
_SEEK_BACKOFF_S = (0.0, 2.0, 10.0, 60.0)  # extra seconds before the target when a seek lands late


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its grid index, its own time, RGB pixels as displayed."""

    index: int  # grid index: the frame sampled for grid time index / rate
    t_ms: int  # the frame's own presentation time in ms from the stream start
    image: np.ndarray  # (H, W, 3) uint8 RGB, rotation applied, longest side <= max_side


def _to_ms(t: Fraction) -> int:
    return math.floor(t * 1000 + Fraction(1, 2))


def _size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    """RGB pixels as displayed: scaled in swscale, then the display rotation applied."""
    width, height = _size(frame.width, frame.height, max_side)
    image = frame.reformat(
        width=width, height=height, format="rgb24", interpolation=_INTERPOLATION
    ).to_ndarray()
    turns = int(round((frame.rotation or 0) / 90.0)) % 4  # counter-clockwise quarter turns
    if turns:
        image = np.ascontiguousarray(np.rot90(image, k=turns))
    return image


class _Clock:
    """Frame times in seconds (exact fractions) from the stream start."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self.time_base = stream.time_base or Fraction(1, 90000)
        self.start = stream.start_time or 0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.step = Fraction(1) / Fraction(rate) if rate else Fraction(1, 25)
        self.last: Fraction | None = None

    def time(self, frame: av.VideoFrame) -> Fraction:
        if frame.pts is not None:
            t = Fraction(frame.pts - self.start) * self.time_base
        elif self.last is not None:
            t = self.last + self.step
        else:
            t = Fraction(0)
        self.last = t
        return t

    def timestamp(self, seconds: Fraction) -> int:
        """A stream timestamp for a time from the stream start (for seeking)."""
        return self.start + math.floor(seconds / self.time_base)


def _declared_end(container, stream) -> Fraction | None:
    """The duration the header declares (the video stream's, else the container's)."""
    if stream.duration and stream.time_base:
        return Fraction(stream.duration) * stream.time_base
    if container.duration and container.duration > 0:
        return Fraction(container.duration, av.time_base)
    return None


def _frames(container, stream, owner: FrameSampler | None) -> Iterator[av.VideoFrame]:
    """Decoded frames; a corrupt or cut-off stream ends the iteration (owner.truncated)."""
    try:
        for packet in container.demux(stream):
            yield from packet.decode()
    except (av.error.FFmpegError, EOFError):
        if owner is not None:
            owner.truncated = True


class FrameSampler:
    """Iterable of SampledFrame at `rate` frames/s of video time (see the module docstring).

    `truncated` is set when decoding stopped on a corrupt or cut-off stream (the frames so far
    were yielded); `decoded` counts every decoded frame (for the bench)."""

    def __init__(
        self, path: Path, rate: float, *, start_index: int = 0, max_side: int | None = None
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if start_index < 0:
            raise ValueError("start_index must be >= 0")
        self.path = Path(path)
        self.rate = Fraction(rate).limit_denominator(1_000_000)
        self.start_index = start_index
        self.max_side = max_side
        self.truncated = False
        self.decoded = 0

    def __iter__(self) -> Iterator[SampledFrame]:
        self.truncated = False
        if self.start_index == 0:
            yield from self._run(None)
            return
        target = Fraction(self.start_index) / self.rate
        for backoff in _SEEK_BACKOFF_S:
            seek_s = target - Fraction(backoff)
            if seek_s <= 0:
                break
            if (yield from self._run(seek_s)):
                return
        yield from self._run(None)  # the seek never landed before the target: from the start

    def _run(self, seek_s: Fraction | None) -> Iterator[SampledFrame]:
        """Decode from the start (seek_s None) or from a keyframe before seek_s. Returns False,
        having yielded nothing, when the seek landed at or after the resume point's time (the
        predecessor of the first frame to yield is then unknown): the caller seeks earlier."""
        target = Fraction(self.start_index) / self.rate
        with av.open(str(self.path), options=OPEN_OPTIONS) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "AUTO"
            clock = _Clock(stream)
            if seek_s is not None:
                try:
                    container.seek(clock.timestamp(seek_s), stream=stream, backward=True)
                except av.error.FFmpegError:
                    return False
            previous: Fraction | None = None
            for frame in _frames(container, stream, self):
                self.decoded += 1
                t = clock.time(frame)
                if previous is None and seek_s is not None and t >= target:
                    return False
                index = 0 if previous is None else max(0, math.floor(previous * self.rate) + 1)
                previous = t if previous is None else max(previous, t)
                if index < self.start_index or t * self.rate < index:
                    continue
                yield SampledFrame(index, _to_ms(t), _rgb(frame, self.max_side))
            if not self.truncated and previous is not None:
                end = _declared_end(container, stream)
                # ended well before its declared duration: cut off without a decode error
                if end is not None and previous + max(clock.step * 3, Fraction(1)) < end:
                    self.truncated = True
        return True


def frame_at(path: Path, t_ms: int) -> np.ndarray:
    """Full-size RGB (rotation applied) of the frame whose t_ms is `t_ms`, the one a
    FrameSampler reported; without an exact match, the first frame after it (else the last)."""
    target = Fraction(t_ms, 1000)
    for backoff in (*_SEEK_BACKOFF_S, None):
        with av.open(str(path), options=OPEN_OPTIONS) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "AUTO"
            clock = _Clock(stream)
            if backoff is not None:
                try:
                    container.seek(
                        clock.timestamp(max(Fraction(0), target - Fraction(backoff))),
                        stream=stream,
                        backward=True,
                    )
                except av.error.FFmpegError:
                    continue
            last = None
            first = True
            for frame in _frames(container, stream, None):
                ms = _to_ms(clock.time(frame))
                if first and backoff is not None and ms > t_ms and target > backoff:
                    break  # landed after the target: seek earlier
                first = False
                if ms >= t_ms:
                    return _rgb(frame, None)
                last = frame
            else:
                if last is not None:
                    return _rgb(last, None)
    raise ValueError("the video has no decodable frame")
