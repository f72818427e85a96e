"""FrameSampler and frame_at: the grid rule, resume equality, rotation, VFR, truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.video.decode import FrameSampler, SampledFrame, frame_at
from tests.app.video import factory

VFR_MS = [0, 100, 150, 900, 1000, 1700, 1733, 2400, 3100, 3200]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decode")
    factory.procedure_video(root / "cfr.mp4", [("cecum", 4), ("blur", 2), ("ileum", 4)])
    factory.vfr_video(root / "vfr.mp4", VFR_MS)
    return root


def _same(a: list[SampledFrame], b: list[SampledFrame]) -> bool:
    return len(a) == len(b) and all(
        x.index == y.index and x.t_ms == y.t_ms and np.array_equal(x.image, y.image)
        for x, y in zip(a, b, strict=True)
    )


def test_grid_on_a_constant_rate(clips: Path) -> None:
    sampler = FrameSampler(clips / "cfr.mp4", 2.0)
    frames = list(sampler)
    assert [(f.index, f.t_ms) for f in frames] == [(i, 500 * i) for i in range(20)]
    assert frames[0].image.shape == (240, 320, 3) and frames[0].image.dtype == np.uint8
    assert sampler.decoded == 100 and not sampler.truncated


def test_grid_rule_at_an_uneven_rate(clips: Path) -> None:
    # grid points every 1/3 s, frames every 100 ms: each index goes to the first frame at or
    # after its grid time
    frames = list(FrameSampler(clips / "cfr.mp4", 3.0))
    assert [f.index for f in frames] == list(range(30))
    for f in frames:
        assert f.t_ms >= f.index * 1000 / 3 - 0.5 and f.t_ms - 100 < f.index * 1000 / 3


def test_vfr_follows_times(clips: Path) -> None:
    frames = list(FrameSampler(clips / "vfr.mp4", 2.0))
    # a frame covering several grid points takes the first; the grid jumps past its time
    assert [(f.index, f.t_ms) for f in frames] == [
        (0, 0), (1, 900), (2, 1000), (3, 1700), (4, 2400), (5, 3100),
    ]  # fmt: skip


@pytest.mark.parametrize(("name", "rate"), [("cfr.mp4", 2.0), ("cfr.mp4", 3.0), ("vfr.mp4", 2.0)])
def test_resume_yields_what_a_full_run_yields(clips: Path, name: str, rate: float) -> None:
    full = list(FrameSampler(clips / name, rate))
    last = full[-1].index
    for start in sorted({1, 2, 3, 5, last // 2, last - 1, last}):
        resumed = list(FrameSampler(clips / name, rate, start_index=start))
        assert _same(resumed, [f for f in full if f.index >= start]), start
    assert list(FrameSampler(clips / name, rate, start_index=last + 1)) == []


def test_deterministic_and_scaled(clips: Path) -> None:
    a = list(FrameSampler(clips / "cfr.mp4", 2.0, max_side=160))
    b = list(FrameSampler(clips / "cfr.mp4", 2.0, max_side=160))
    assert _same(a, b)
    assert a[0].image.shape == (120, 160, 3)


def test_frame_at_returns_the_sampled_frame(clips: Path) -> None:
    for name in ("cfr.mp4", "vfr.mp4"):
        frames = list(FrameSampler(clips / name, 2.0))
        for f in frames[::3] + frames[-1:]:
            assert np.array_equal(frame_at(clips / name, f.t_ms), f.image), (name, f.t_ms)


def test_rotation_is_applied(tmp_path: Path) -> None:
    # 90 degrees counter-clockwise (FFmpeg's display matrix): the band on the encoded
    # frame's left edge ends up at the bottom of the displayed frame
    path = factory.rotated_video(tmp_path / "rot.mp4", 90)
    frames = list(FrameSampler(path, 2.0, max_side=160))
    image = frames[0].image
    assert image.shape == (160, 120, 3)
    assert image[-5:].mean() > 240 and image[:5].mean() < 100
    full = frame_at(path, frames[1].t_ms)
    assert full.shape == (320, 240, 3) and full[-5:].mean() > 240


def test_odd_size(tmp_path: Path) -> None:
    frames = list(FrameSampler(factory.odd_size_video(tmp_path / "odd.mp4"), 2.0))
    assert frames[0].image.shape == (241, 321, 3) and len(frames) == 4


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_keeps_what_decodes(clips: Path, tmp_path: Path, suffix: str) -> None:
    src = factory.procedure_video(tmp_path / f"src{suffix}", [("cecum", 4), ("plain", 4)]).path
    full = list(FrameSampler(src, 2.0))
    sampler = FrameSampler(factory.truncated_copy(src, tmp_path / f"cut{suffix}"), 2.0)
    cut = list(sampler)
    assert sampler.truncated
    assert 4 <= len(cut) < len(full)
    # every frame before the cut is the full run's (the last one may be damaged)
    assert _same(cut[:-1], full[: len(cut) - 1])


def test_hevc(tmp_path: Path) -> None:
    if not factory.encoder_available("hevc"):
        pytest.skip("this PyAV build has no HEVC encoder (libx265)")
    frames = list(FrameSampler(factory.hevc_video(tmp_path / "h.mp4"), 2.0))
    assert [f.t_ms for f in frames] == [0, 500, 1000, 1500]
