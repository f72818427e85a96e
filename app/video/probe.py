"""Probe an uploaded file with PyAV before any job starts: what it is, and whether we take it.

Probing opens the container with a bounded probe size, checks the limits from the header
(pixels, duration) before decoding anything, then decodes the first video frame: a file whose
first frame does not decode is refused now (422) rather than failing in the analysis job. A
file that decodes at first but is cut off later (an interrupted recording) is accepted: the
analysis keeps what decodes (FrameSampler.truncated).

Refusals (app.video.errors): zero length -> 422 video_unreadable; not a container FFmpeg
opens, or no video stream (audio only) -> 415 not_a_video; no decoder -> 415
unsupported_codec; more than `max_pixels` per frame -> 413 video_too_large; longer than
`max_duration_s` -> 413 video_too_long; no frame decodes -> 422 video_unreadable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error

from app.video.errors import (
    NOT_A_VIDEO,
    UNSUPPORTED_CODEC,
    VIDEO_TOO_LARGE,
    VIDEO_TOO_LONG,
    VIDEO_UNREADABLE,
    VideoRejected,
)

# bounded reads, so that hostile input cannot make the probe read or decode for long
OPEN_OPTIONS = {"probesize": "10000000", "analyzeduration": "10000000"}  # 10 MB / 10 s
MAX_FIRST_FRAME_PACKETS = 600  # packets demuxed while looking for the first decodable frame
MAX_DURATION_PACKETS = 2_000_000  # packets demuxed to estimate a duration the header lacks

# the demuxers we take (FFmpeg names; a comma list for the ISO family) -> the short name we
# store. An allow-list: FFmpeg also opens still images (a JPEG named .mp4 is a one-frame
# "jpeg_pipe" video), playlists and network protocols, none of which is a procedure video.
# The elementary streams (mpegvideo, h264, hevc) are what DICOM Video Endoscopic objects carry.
_CONTAINERS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "matroska,webm": "matroska",
    "avi": "avi",
    "mpegts": "mpegts",
    "mpeg": "mpeg",
    "mpegvideo": "mpegvideo",
    "h264": "h264",
    "hevc": "hevc",
    "m4v": "m4v",
}


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learnt; width/height as displayed (after rotation)."""

    container: str  # short name: "mp4", "mov", "matroska", "avi", "mpegts", ...
    codec: str  # decoder name: "h264", "hevc", "mpeg4", "mpeg2video", "vp9", "av1", ...
    width: int
    height: int
    fps: float  # average frame rate (guessed when the header has none)
    duration_s: float
    rotation: int  # 0, 90, 180, 270: clockwise, as displayed
    pix_fmt: str
    has_audio: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _container_name(container: av.container.InputContainer) -> str:
    short = _CONTAINERS.get(container.format.name)
    if short is None:
        raise VideoRejected.of(NOT_A_VIDEO, "not a video container this service reads")
    if short == "mp4" and str(container.metadata.get("major_brand", "")).startswith("qt"):
        return "mov"  # QuickTime: same demuxer, its own brand
    return short


def _clockwise(ccw: float) -> int:
    """FFmpeg's display-matrix angle (counter-clockwise) -> clockwise quarter turns in degrees."""
    return int(round(-ccw / 90.0)) % 4 * 90


def _stream_duration(container, stream) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if stream.duration is not None and stream.duration > 0 and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _demuxed_duration(path: Path, index: int, max_duration_s: float) -> float:
    """The span of the video packets' timestamps: for containers without a duration (raw
    streams, some MPEG-TS). Stops as soon as the limit is passed."""
    first = last = None
    with av.open(str(path), options=OPEN_OPTIONS) as container:
        stream = container.streams[index]
        tb = stream.time_base or Fraction(1, 90000)
        try:
            for n, packet in enumerate(container.demux(stream)):
                if n >= MAX_DURATION_PACKETS:
                    break
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                end = ts + (packet.duration or 0)
                first = ts if first is None else min(first, ts)
                last = end if last is None else max(last, end)
                if float((last - first) * tb) > max_duration_s:
                    break
        except av.error.FFmpegError:
            pass  # a damaged tail: the span up to it
    if first is None or last is None:
        return 0.0
    return float((last - first) * tb)


def _first_frame(container, stream) -> av.VideoFrame:
    """Decode the first video frame, reading a bounded number of packets."""
    try:
        for n, packet in enumerate(container.demux(stream)):
            if n >= MAX_FIRST_FRAME_PACKETS:
                break
            for frame in packet.decode():
                return frame
    except av.error.FFmpegError as exc:
        raise VideoRejected.of(VIDEO_UNREADABLE, "the first video frame cannot be decoded") from exc
    raise VideoRejected.of(VIDEO_UNREADABLE, "no video frame could be decoded")


def _looks_iso(path: Path) -> bool:
    """Whether the file starts like an ISO media file (an "ftyp" box)."""
    with path.open("rb") as fh:
        return fh.read(12)[4:8] == b"ftyp"


def probe(path: Path, *, max_duration_s: float, max_pixels: int) -> VideoInfo:
    """Describe the video at `path` or raise VideoRejected (see the module docstring)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise VideoRejected.of(VIDEO_UNREADABLE, "the file is empty")
    try:
        container = av.open(str(path), options=OPEN_OPTIONS)
    except av.error.FFmpegError as exc:
        if _looks_iso(path):  # an MP4/MOV cut off before its index (moov) was written
            raise VideoRejected.of(
                VIDEO_UNREADABLE, "the MP4/MOV index is missing (an interrupted recording?)"
            ) from exc
        raise VideoRejected.of(NOT_A_VIDEO, "not a video container this service reads") from exc
    with container:
        container_name = _container_name(container)
        if not container.streams.video:
            raise VideoRejected.of(NOT_A_VIDEO, "the file has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or ctx.codec is None or not ctx.codec.is_decoder:
            raise VideoRejected.of(UNSUPPORTED_CODEC, "no decoder for this video codec")
        codec = ctx.codec.name
        if ctx.width and ctx.height and ctx.width * ctx.height > max_pixels:
            raise VideoRejected.of(
                VIDEO_TOO_LARGE, f"{ctx.width}x{ctx.height} is above {max_pixels} pixels"
            )
        duration = _stream_duration(container, stream)
        if duration is not None and duration > max_duration_s:
            raise VideoRejected.of(
                VIDEO_TOO_LONG, f"{duration:.0f} s is above the limit of {max_duration_s:.0f} s"
            )
        has_audio = bool(container.streams.audio)
        index = stream.index
        ctx.thread_type = "AUTO"
        frame = _first_frame(container, stream)
        width, height = frame.width, frame.height
        if width * height > max_pixels:  # the header can lie or be absent
            raise VideoRejected.of(
                VIDEO_TOO_LARGE, f"{width}x{height} is above {max_pixels} pixels"
            )
        rotation = _clockwise(frame.rotation or 0)
        pix_fmt = frame.format.name
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if duration is None:
        duration = _demuxed_duration(path, index, max_duration_s)
        if duration > max_duration_s:
            raise VideoRejected.of(
                VIDEO_TOO_LONG, f"{duration:.0f} s is above the limit of {max_duration_s:.0f} s"
            )
    fps = float(rate) if rate else 0.0
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        container=container_name,
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        duration_s=float(duration),
        rotation=rotation,
        pix_fmt=pix_fmt,
        has_audio=has_audio,
    )
