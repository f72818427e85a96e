"""Timeline maths: smoothing over ok frames, temporal NMS of picks, pooled segment vectors."""

from __future__ import annotations

import numpy as np
import pytest

from app.video.timeline import FrameScore, pick_stills, segments, smooth

RATE = 2.0  # frames per second on the grid


def frames_of(shares: list[float], ok: list[bool] | None = None, label: str = "cecum"):
    ok = ok or [True] * len(shares)
    return [
        FrameScore(i, int(i * 1000 / RATE), o, 0.5, {label: s} if s else {})
        for i, (s, o) in enumerate(zip(shares, ok, strict=True))
    ]


def test_smooth_is_a_centred_mean_over_ok_frames_only() -> None:
    shares = [0, 0, 1, 1, 1, 1, 0, 0]
    ok = [True, True, True, False, True, True, True, True]
    out = smooth(frames_of(shares, ok), ["cecum"], window_s=2.0, rate=RATE)["cecum"]
    # window +/- 1 s = +/- 2 grid steps; frame 3 is rejected and carries no evidence
    assert out[2] == pytest.approx((0 + 0 + 1 + 1) / 4)
    assert out[3] == pytest.approx((0 + 1 + 1 + 1) / 4)  # rejected frames get a value too
    assert out[4] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert len(out) == len(shares)


def test_smooth_skips_grid_gaps_and_empty_windows() -> None:
    frames = [
        FrameScore(0, 0, True, 1.0, {"a": 1.0}),
        FrameScore(10, 5000, True, 1.0, {"a": 0.5}),
        FrameScore(11, 5500, False, 0.0, {}),
    ]
    out = smooth(frames, ["a", "b"], window_s=1.0, rate=RATE)
    np.testing.assert_allclose(out["a"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(out["b"], [0, 0, 0])
    lonely = smooth([FrameScore(0, 0, False, 0, {"a": 1})], ["a"], window_s=1, rate=RATE)
    assert lonely["a"][0] == 0.0
    assert smooth([], ["a"], window_s=1, rate=RATE)["a"].shape == (0,)


def test_picks_respect_gap_k_min_score_and_only_ok_frames() -> None:
    shares = [0.2, 0.9, 1.0, 0.95, 0.9, 0.8, 0.9, 1.0, 0.9, 0.3, 0.99, 0.7]
    ok = [True] * 12
    ok[7] = False  # the best frame of the second bump is rejected
    frames = frames_of(shares, ok)
    sm = {"cecum": np.array(shares)}
    picks = pick_stills(frames, sm, {"cecum": ["cecum"]}, k=3, min_gap_s=2.0, min_score=0.75)
    assert [p.rank for p in picks] == [1, 2, 3]
    assert picks[0].index == 2 and picks[0].score == 1.0
    times = [p.t_ms for p in picks]
    assert all(abs(a - b) >= 2000 for i, a in enumerate(times) for b in times[i + 1 :])
    assert all(frames[p.index].ok and p.score >= 0.75 for p in picks)
    assert 7 not in [p.index for p in picks]
    assert picks[1].index == 10  # 0.99, 4 s after the first
    none = pick_stills(frames, sm, {"cecum": ["cecum"]}, k=3, min_gap_s=2, min_score=1.01)
    assert none == []


def test_requirement_takes_its_best_label_and_ties_go_to_quality_then_time() -> None:
    frames = [
        FrameScore(0, 0, True, 0.4, {}),
        FrameScore(1, 500, True, 0.9, {}),
        FrameScore(2, 1000, True, 0.9, {}),
        FrameScore(8, 4000, True, 0.2, {}),
    ]
    sm = {
        "cecum": np.array([1.0, 0.5, 0.5, 0.0]),
        "appendiceal-orifice": np.array([0.0, 1.0, 1.0, 1.0]),
    }
    req = {"cecum": ["cecum", "appendiceal-orifice"], "ileum": ["ileum"]}
    picks = pick_stills(frames, sm, req, k=2, min_gap_s=0.0, min_score=0.5)
    assert [(p.requirement, p.index, p.label, p.rank) for p in picks] == [
        ("cecum", 1, "appendiceal-orifice", 1),  # quality 0.9 beats 0.4; earlier beats later
        ("cecum", 2, "appendiceal-orifice", 2),
    ]
    again = pick_stills(list(frames), dict(sm), req, k=2, min_gap_s=0.0, min_score=0.5)
    assert again == picks


def test_segments_pool_windows_and_normalise() -> None:
    t = np.array([0, 500, 1000, 1500, 2000, 2500, 3000, 6500])
    vecs = np.zeros((8, 2), np.float32)
    vecs[:4, 0] = 1.0
    vecs[4:, 1] = 1.0
    out = segments(t, vecs, window_s=2.0, hop_s=1.0)
    assert [(s.start_ms, s.end_ms) for s in out] == [
        (0, 2000),
        (1000, 3000),
        (2000, 4000),
        (3000, 5000),
        (5000, 7000),
        (6000, 8000),
    ]
    for s in out:
        assert np.linalg.norm(s.vector) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(out[0].vector, [1, 0], atol=1e-6)
    np.testing.assert_allclose(out[1].vector, [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    assert segments(np.zeros(0), np.zeros((0, 2)), window_s=4, hop_s=2) == []
