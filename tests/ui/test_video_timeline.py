"""Placement of the video timeline (app/ui/video_timeline.py): pure geometry, no server."""

from __future__ import annotations

import numpy as np

from app.ui import video_timeline as vt


def _frames(n: int, step_ms: int, bad: range = range(0)) -> list[vt.FrameRow]:
    return [vt.FrameRow(i * step_ms, i not in bad, "blur" if i in bad else None) for i in range(n)]


def test_clock_reads_like_a_player() -> None:
    assert [vt.clock(ms) for ms in (0, 4_400, 65_000, 3_725_000)] == [
        "0:00",
        "0:04",
        "1:05",
        "1:02:05",
    ]
    assert vt.clock(None) == "—"


def test_runs_merge_equal_verdicts_and_span_the_plot() -> None:
    frames = _frames(20, 500, bad=range(6, 10))
    tl = vt.build(
        duration_ms=10_000,
        frames=frames,
        requirements=[("cecum", "Caecum", np.linspace(0, 1, 20))],
        picks=[],
        step_ms=500,
        threshold=0.5,
    )
    assert [(r.reason, r.start_ms, r.end_ms) for r in tl.runs] == [
        (None, 0, 3000),
        ("blur", 3000, 5000),
        (None, 5000, 10_000),
    ]
    assert tl.runs[0].x == tl.x0
    assert abs(tl.runs[-1].x + tl.runs[-1].w - (tl.x0 + tl.plot_w)) < 0.2
    assert [t.text for t in tl.ticks] == [
        "0:00",
        "0:01",
        "0:02",
        "0:03",
        "0:04",
        "0:05",
        "0:06",
        "0:07",
        "0:08",
        "0:09",
        "0:10",
    ]


def test_a_long_video_is_down_sampled_but_keeps_a_short_peak() -> None:
    n = 2 * 3600  # an hour at 2 frames/s
    score = np.zeros(n)
    score[4321] = 0.95  # one frame: must stay visible after down-sampling
    tl = vt.build(
        duration_ms=n * 500,
        frames=_frames(n, 500),
        requirements=[("cecum", "Caecum", score)],
        picks=[vt.PickMark("uid", "cecum", "cecum", 1, 4321 * 500, 0.95, "needs_review")],
        step_ms=500,
        threshold=0.5,
    )
    band = tl.bands[0]
    points = band.path.count("L")
    assert points <= vt.MAX_POINTS + 3
    heights = [float(p.split(",")[1].split()[0]) for p in band.path.split("L")[1:-1]]
    assert min(heights) < band.y + vt.ROW_H - 0.9 * (vt.ROW_H - 2)
    assert band.peak == 0.95
    (marker,) = band.markers
    assert tl.x0 < marker.x < tl.x0 + tl.plot_w and marker.seconds == 2160.5
    assert [t.text for t in tl.ticks][:3] == ["0:00", "10:00", "20:00"]
