"""QualityGate: each bad kind of the synthetic video is rejected with its reason, landmark
views and the real HyperKvasir photos are kept."""

from __future__ import annotations

from collections import Counter
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.video.decode import FrameSampler
from app.video.quality import REASONS, QualityGate, QualityVerdict
from tests.app.video import factory

GOOD = ("cecum", "z-line", "pylorus", "ileum", "plain")
BAD = ("blur", "dark", "glare", "out_of_body", "overexposed", "low_texture")
SCRIPT = [(kind, 2.5) for pair in zip_longest(GOOD, BAD) for kind in pair if kind]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[QualityVerdict]]:
    """Verdicts per kind over two seeds and sizes, sampled as the analysis samples."""
    gate = QualityGate()
    out: dict[str, list[QualityVerdict]] = {}
    root = tmp_path_factory.mktemp("quality")
    for seed, size in ((1, (320, 240)), (2, (480, 360))):
        video = factory.procedure_video(root / f"q{seed}.mp4", SCRIPT, seed=seed, size=size)
        for frame in FrameSampler(video.path, 2.0, max_side=448):
            kind = video.kind_at(frame.t_ms / 1000)
            out.setdefault(kind, []).append(gate.judge(frame.image))
    return out


def test_script_covers_every_reason() -> None:
    assert set(BAD) == set(REASONS)


@pytest.mark.parametrize("kind", BAD)
def test_bad_kinds_rejected_with_their_reason(verdicts, kind: str) -> None:
    reasons = Counter(v.reason for v in verdicts[kind])
    assert reasons[kind] >= 0.9 * len(verdicts[kind]), reasons


@pytest.mark.parametrize("kind", GOOD)
def test_landmark_views_kept(verdicts, kind: str) -> None:
    kept = sum(v.ok for v in verdicts[kind])
    assert kept >= 0.9 * len(verdicts[kind]), Counter(v.reason for v in verdicts[kind])


def test_score_agrees_with_the_verdict(verdicts) -> None:
    for v in (v for vs in verdicts.values() for v in vs):
        assert 0.0 <= v.score <= 1.0
        assert (v.score >= 0.5) == v.ok and (v.reason is None) == v.ok
        assert {"red", "dark", "overexposed", "glare", "texture", "sharpness"} <= set(v.features)


def test_real_photos_kept(hyperkvasir_paths: list[Path]) -> None:
    gate = QualityGate()
    for photo in hyperkvasir_paths:
        verdict = gate.judge(np.asarray(Image.open(photo).convert("RGB")))
        assert verdict.ok, (photo.name, verdict)


def test_degenerate_frames() -> None:
    gate = QualityGate()
    assert gate.judge(np.zeros((240, 320, 3), np.uint8)).reason == "dark"
    assert gate.judge(np.full((240, 320, 3), 255, np.uint8)).reason == "overexposed"
    grey = np.random.default_rng(0).integers(60, 200, (240, 320, 1), dtype=np.uint8)
    assert gate.judge(np.repeat(grey, 3, axis=2)).reason == "out_of_body"
    assert gate.judge(np.zeros((8, 8, 3), np.uint8)).reason == "dark"  # tiny: no crash
