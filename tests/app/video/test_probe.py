"""probe(): every robustness fixture gets a good description or the right refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.video.errors import VideoRejected
from app.video.probe import VideoInfo, probe
from tests.app.video import factory

LIMITS = {"max_duration_s": 3600.0, "max_pixels": 4096 * 2160}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("probe")


def _rejected(path: Path, **limits: float) -> VideoRejected:
    with pytest.raises(VideoRejected) as caught:
        probe(path, **{**LIMITS, **limits})
    return caught.value


def test_h264_mp4(clips: Path) -> None:
    video = factory.procedure_video(clips / "a.mp4", [("cecum", 2), ("blur", 1)])
    info = probe(video.path, **LIMITS)
    assert info == VideoInfo("mp4", "h264", 320, 240, 10.0, 3.0, 0, "yuv420p", False)
    assert info.as_dict()["codec"] == "h264"


@pytest.mark.parametrize(
    ("name", "codec", "container"),
    [
        ("b.mkv", "h264", "matroska"),
        ("c.avi", "mpeg4", "avi"),
        ("d.ts", "mpeg2video", "mpegts"),
        ("e.mov", "h264", "mov"),
        ("f.webm", "vp9", "matroska"),
    ],
)
def test_containers_and_codecs(clips: Path, name: str, codec: str, container: str) -> None:
    factory.procedure_video(clips / name, [("plain", 1)], codec=codec)
    info = probe(clips / name, **LIMITS)
    assert (info.container, info.codec, info.width, info.height) == (container, codec, 320, 240)
    assert info.duration_s == pytest.approx(1.0, abs=0.15)
    assert info.fps == pytest.approx(10.0)


def test_hevc(clips: Path) -> None:
    if not factory.encoder_available("hevc"):
        pytest.skip("this PyAV build has no HEVC encoder (libx265)")
    info = probe(factory.hevc_video(clips / "h.mp4"), **LIMITS)
    assert (info.codec, info.width, info.height) == ("hevc", 320, 240)


def test_truncated_with_index_first_is_accepted(clips: Path) -> None:
    # an upload cut off mid-stream, its index (moov) first: what decodes is analysed
    src = factory.procedure_video(clips / "full.mp4", [("cecum", 4), ("plain", 4)]).path
    info = probe(factory.truncated_copy(src, clips / "cut.mp4"), **LIMITS)
    assert info.codec == "h264" and info.duration_s == pytest.approx(8.0)


def test_truncated_without_index_is_unreadable(clips: Path) -> None:
    _, frames = factory.render([("plain", 2)])
    src = factory.encode(clips / "late.mp4", frames, faststart=False)
    err = _rejected(factory.truncated_copy(src, clips / "late-cut.mp4"))
    assert (err.status, err.code) == (422, "video_unreadable")


def test_vfr(clips: Path) -> None:
    path = factory.vfr_video(clips / "vfr.mp4", [0, 100, 150, 900, 1000, 1700, 2400, 3100])
    info = probe(path, **LIMITS)
    assert info.duration_s == pytest.approx(3.2, abs=0.2)
    assert info.fps > 0


def test_odd_size(clips: Path) -> None:
    info = probe(factory.odd_size_video(clips / "odd.mp4"), **LIMITS)
    assert (info.width, info.height, info.pix_fmt) == (321, 241, "yuv444p")


@pytest.mark.parametrize(("ccw", "clockwise"), [(90, 270), (180, 180), (270, 90)])
def test_rotation_metadata(clips: Path, ccw: int, clockwise: int) -> None:
    info = probe(factory.rotated_video(clips / f"rot{ccw}.mp4", ccw), **LIMITS)
    assert info.rotation == clockwise
    assert (info.width, info.height) == ((240, 320) if ccw != 180 else (320, 240))


def test_audio_only(clips: Path) -> None:
    err = _rejected(factory.audio_only(clips / "voice.m4a"))
    assert (err.status, err.code) == (415, "not_a_video")


def test_zero_length(clips: Path) -> None:
    err = _rejected(factory.zero_length(clips / "empty.mp4"))
    assert (err.status, err.code) == (422, "video_unreadable")


@pytest.mark.parametrize("builder", [factory.jpeg_named_mp4, factory.random_bytes])
def test_not_a_video(clips: Path, builder) -> None:
    err = _rejected(builder(clips / f"{builder.__name__}.mp4"))
    assert (err.status, err.code) == (415, "not_a_video")
    assert "mp4" not in err.message  # never the file name (it can carry patient data)


def test_limits(clips: Path) -> None:
    path = factory.procedure_video(clips / "limits.mp4", [("plain", 3)]).path
    err = _rejected(path, max_duration_s=2.0)
    assert (err.status, err.code) == (413, "video_too_long")
    err = _rejected(path, max_pixels=320 * 240 - 1)
    assert (err.status, err.code) == (413, "video_too_large")
    assert probe(path, max_duration_s=3.0, max_pixels=320 * 240).duration_s == 3.0
