"""From per-frame vote shares to a timeline: smoothing, the picked stills, segment vectors.

Pure numpy, no I/O: the analysis job, the UI's timeline and the tests use the same functions,
so what the UI draws is what the job picked from.

Choices (issue 16, ../shared/research/video.md section 3):
- Smoothing is a centred moving average over the *ok* frames of a window of `window_s`
  (at least 1 s): a majority vote over ~1-2 s is what the published photo-documentation
  systems use, and a mean of vote shares is its soft form. Rejected frames carry no evidence,
  so they are left out of the mean instead of counting as zero (a blurred second inside the
  caecum must not lower the caecum's score around it). Windows are counted on the sampling
  grid (grid index / rate), which is regular even when the stream's frame rate is not.
- A requirement's score is the best of its labels' smoothed scores (any label documents it).
- Stills are chosen greedily by score with a temporal non-maximum suppression: at least
  `min_gap_s` between two stills of one requirement. Scores are compared after rounding to
  3 decimals (the baseline's shares crowd near 1, and the last bits of a vector can differ
  between batch sizes), then the sharper frame (quality) wins, then the earlier one: the
  order is total, so the same input always gives the same picks.
- Segments are fixed windows (`window_s`, hop `hop_s`) from t = 0; a segment's vector is the
  mean of the kept frames' vectors inside it, L2-normalised (cosine search in the index).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SCORE_DECIMALS = 3  # scores closer than this tie (then quality, then time decide)


@dataclass(frozen=True)
class FrameScore:
    """One analysed frame: its grid index and time, the gate's verdict and its vote shares."""

    index: int
    t_ms: int
    ok: bool
    quality: float
    scores: Mapping[str, float]


@dataclass(frozen=True)
class Pick:
    """A still chosen for a requirement: the frame, its smoothed score and its rank (1..k)."""

    requirement: str
    label: str
    index: int
    t_ms: int
    score: float
    quality: float
    rank: int


@dataclass(frozen=True)
class Segment:
    """A window of the video and its pooled unit vector."""

    start_ms: int
    end_ms: int
    vector: np.ndarray


def smooth(
    frames: Sequence[FrameScore], labels: Sequence[str], *, window_s: float, rate: float
) -> dict[str, np.ndarray]:
    """Per label, the mean share over the ok frames within +/- window_s / 2 of each frame.

    The arrays are aligned with `frames` (rejected frames get a value too, for display);
    a frame with no ok frame in its window scores 0.
    """
    n = len(frames)
    if n == 0:
        return {label: np.zeros(0) for label in labels}
    index = np.array([f.index for f in frames], dtype=np.int64)
    ok = np.array([f.ok for f in frames], dtype=bool)
    half = int(math.floor(max(window_s, 0.0) * rate / 2.0 + 1e-9))  # grid steps each side
    span = int(index.max()) + 1
    counts = np.zeros(span, dtype=np.float64)
    np.add.at(counts, index[ok], 1.0)
    lo = np.clip(index - half, 0, span)
    hi = np.clip(index + half + 1, 0, span)
    count_c = np.concatenate([[0.0], np.cumsum(counts)])
    in_window = count_c[hi] - count_c[lo]
    out: dict[str, np.ndarray] = {}
    for label in labels:
        values = np.zeros(span, dtype=np.float64)
        shares = np.array([float(f.scores.get(label, 0.0)) for f in frames], dtype=np.float64)
        np.add.at(values, index[ok], shares[ok])
        sum_c = np.concatenate([[0.0], np.cumsum(values)])
        total = sum_c[hi] - sum_c[lo]
        out[label] = np.divide(
            total, in_window, out=np.zeros(n, dtype=np.float64), where=in_window > 0
        )
    return out


def requirement_scores(
    smoothed: Mapping[str, np.ndarray], labels: Sequence[str], n: int
) -> tuple[np.ndarray, list[str]]:
    """(best smoothed score per frame, the label giving it) over a requirement's labels.

    Ties go to the label listed first (the requirement's own order)."""
    best = np.zeros(n, dtype=np.float64)
    which = [labels[0] if labels else ""] * n
    for label in labels:
        values = smoothed.get(label)
        if values is None:
            continue
        better = values > best
        best = np.where(better, values, best)
        for i in np.flatnonzero(better):
            which[int(i)] = label
    return best, which


def pick_stills(
    frames: Sequence[FrameScore],
    smoothed: Mapping[str, np.ndarray],
    requirements: Mapping[str, Sequence[str]],
    *,
    k: int,
    min_gap_s: float,
    min_score: float,
) -> list[Pick]:
    """The top `k` ok frames per requirement, >= `min_gap_s` apart, smoothed score >= `min_score`.

    Returns picks ordered by requirement (the mapping's order), then rank.
    """
    n = len(frames)
    gap_ms = min_gap_s * 1000.0
    picks: list[Pick] = []
    for requirement, labels in requirements.items():
        score, which = requirement_scores(smoothed, list(labels), n)
        candidates = [i for i in range(n) if frames[i].ok and score[i] >= min_score]
        candidates.sort(
            key=lambda i: (
                -round(float(score[i]), SCORE_DECIMALS),
                -round(float(frames[i].quality), SCORE_DECIMALS),
                frames[i].t_ms,
                frames[i].index,
            )
        )
        chosen: list[int] = []
        for i in candidates:
            if len(chosen) >= k:
                break
            if all(abs(frames[i].t_ms - frames[j].t_ms) >= gap_ms for j in chosen):
                chosen.append(i)
        for rank, i in enumerate(chosen, start=1):
            f = frames[i]
            picks.append(
                Pick(requirement, which[i], f.index, f.t_ms, float(score[i]), f.quality, rank)
            )
    return picks


def segments(
    t_ms: np.ndarray, vectors: np.ndarray, *, window_s: float, hop_s: float
) -> list[Segment]:
    """Windows [start, start + window) every `hop_s` from 0 over the frames' times; each with
    the L2-normalised mean of its frames' vectors. Windows without a frame are skipped."""
    t = np.asarray(t_ms, dtype=np.int64)
    vecs = np.asarray(vectors, dtype=np.float32)
    if len(t) == 0:
        return []
    if len(t) != len(vecs):
        raise ValueError("t_ms and vectors differ in length")
    window_ms, hop_ms = round(window_s * 1000), max(1, round(hop_s * 1000))
    order = np.argsort(t, kind="stable")
    t, vecs = t[order], vecs[order]
    out: list[Segment] = []
    start = 0
    last = int(t[-1])
    while start <= last:
        lo, hi = np.searchsorted(t, [start, start + window_ms], side="left")
        if hi > lo:
            mean = vecs[lo:hi].astype(np.float64).mean(axis=0)
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                out.append(Segment(start, start + window_ms, (mean / norm).astype(np.float32)))
        start += hop_ms
    return out
