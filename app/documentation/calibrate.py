"""Fit per-label thresholds on held-out labelled vectors for a target precision.

Held-out queries are voted against the gallery as they would be in service. To make
"unrecognised" mean something for photos of classes the gallery lacks, every held-out query
is voted a second time against the gallery without its own class ("open set"): whatever it
wins there is a false positive. The thresholds therefore reject both confusions between
landmarks and look-alikes from outside the gallery.

Votes are fitted the way the service votes: within the reach of the procedure kind that can
show the query's label (reach.py), narrowed by the same `VoteConfig.reach` mode. A query
whose label no standard names (a look-alike, a finding) could turn up in any procedure, so
it is voted once per kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve

from app.documentation.gallery import ExactSearch, ReferenceGallery
from app.documentation.reach import all_kinds, kinds_of, reach_of
from app.documentation.schema import Standard
from app.documentation.thresholds import Calibration, LabelThreshold
from app.documentation.vote import VoteConfig, best_within, within


@dataclass(frozen=True)
class Votes:
    """Held-out votes: winning label, its score, and whether it was right."""

    predicted: np.ndarray  # (n,) object: str | None
    scores: np.ndarray  # (n,) float
    correct: np.ndarray  # (n,) bool


@dataclass(frozen=True)
class LabelCurve:
    """Precision/recall of one label as its threshold goes down (for the PNG and the table)."""

    label: str
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def query_reaches(
    query_labels: Sequence[str], standards: Mapping[str, Standard]
) -> tuple[list[int], list[frozenset[str]]]:
    """(query index, excluded labels) per vote: one per kind that can show the query's label,
    one per kind for a label no standard names."""
    kinds = all_kinds(standards)
    excluded = {kind: reach_of(standards, kind).excluded for kind in kinds}
    rows, reaches = [], []
    for i, label in enumerate(query_labels):
        for kind in kinds_of(standards, label) or kinds:
            rows.append(i)
            reaches.append(excluded[kind])
    return rows, reaches


def heldout_votes(
    gallery_vectors: np.ndarray,
    gallery_labels: Sequence[str],
    query_vectors: np.ndarray,
    query_labels: Sequence[str],
    vote_config: VoteConfig,
    *,
    open_set: bool = True,
    reaches: Sequence[frozenset[str]] | None = None,
) -> tuple[Votes, Votes | None]:
    """Held-out votes against the gallery and (open_set) against it without their own class;
    `reaches[i]` are the labels query i's vote may not consider (none when omitted)."""
    search = ExactSearch(np.arange(len(gallery_labels)), gallery_vectors)
    gallery = ReferenceGallery(search, dict(enumerate(gallery_labels)))
    reaches = reaches if reaches is not None else [frozenset()] * len(query_labels)
    n = len(gallery_labels)
    closed, opened = [], []
    for neighbours, truth, excluded in zip(
        gallery.neighbours(query_vectors, n), query_labels, reaches, strict=True
    ):
        label, score = best_within(neighbours, excluded, vote_config)
        closed.append((label, score, label == truth))
        # open set: a gallery that never had the query's class, voted as the service votes
        label, score = best_within(within(neighbours, frozenset({truth}), n), excluded, vote_config)
        opened.append((label, score, False))

    def pack(rows: list[tuple[str | None, float, bool]]) -> Votes:
        return Votes(
            np.array([r[0] for r in rows], dtype=object),
            np.array([r[1] for r in rows], dtype=np.float64),
            np.array([r[2] for r in rows], dtype=bool),
        )

    return pack(closed), (pack(opened) if open_set else None)


def _lowest_threshold(precision: np.ndarray, thresholds: np.ndarray, target: float) -> float | None:
    """The lowest threshold whose precision reaches `target` (maximises recall), or None."""
    ok = precision[:-1] >= target  # sklearn appends a final point (precision 1) with no threshold
    return float(thresholds[ok].min()) if ok.any() else None


def fit_label(
    label: str, closed: Votes, opened: Votes | None, support: int, target: float, uncertain: float
) -> tuple[LabelThreshold, LabelCurve | None]:
    """Thresholds for one label from the votes it won."""
    mask = closed.predicted == label
    scores, correct = closed.scores[mask], closed.correct[mask]
    if opened is not None:
        omask = opened.predicted == label
        scores = np.concatenate([scores, opened.scores[omask]])
        correct = np.concatenate([correct, opened.correct[omask]])
    n_pred = int(mask.sum())
    if support == 0 or not correct.any():
        return LabelThreshold(label, None, None, None, None, support, n_pred), None
    precision, recall, thresholds = precision_recall_curve(correct, scores)
    recall = recall * correct.sum() / support  # recall over all held-out images of the label
    curve = LabelCurve(label, precision, recall, thresholds)
    documented = _lowest_threshold(precision, thresholds, target)
    low = _lowest_threshold(precision, thresholds, uncertain)
    if documented is not None and (low is None or low > documented):
        low = documented
    if documented is None:
        return LabelThreshold(label, None, low, None, None, support, n_pred), curve
    at = int(np.flatnonzero(thresholds == documented)[0])
    return (
        LabelThreshold(
            label, documented, low, float(precision[at]), float(recall[at]), support, n_pred
        ),
        curve,
    )


def fit_calibration(
    gallery_vectors: np.ndarray,
    gallery_labels: Sequence[str],
    query_vectors: np.ndarray,
    query_labels: Sequence[str],
    *,
    model_id: str,
    vote_config: VoteConfig | None = None,
    target_precision: float = 0.95,
    uncertain_precision: float = 0.5,
    open_set: bool = True,
    standards: Mapping[str, Standard] | None = None,
) -> tuple[Calibration, list[LabelCurve]]:
    """Calibrate every gallery label on held-out vectors; returns thresholds and PR curves.

    Votes run within each query's procedure reach by `standards` (default: the shipped ones),
    as the service votes; pass an empty mapping for whole-gallery votes.
    """
    vote_config = vote_config or VoteConfig()
    gallery_labels = [str(lab) for lab in gallery_labels]
    query_labels = [str(lab) for lab in query_labels]
    if standards is None:
        from app.documentation.loader import load_standards

        standards = load_standards()
    n_heldout = len(query_labels)
    rows, reaches = query_reaches(query_labels, standards)
    if not rows:  # no standard at all: one whole-gallery vote per query
        rows, reaches = list(range(len(query_labels))), [frozenset()] * len(query_labels)
    query_vectors = np.asarray(query_vectors)[rows]
    query_labels = [query_labels[i] for i in rows]
    closed, opened = heldout_votes(
        gallery_vectors,
        gallery_labels,
        query_vectors,
        query_labels,
        vote_config,
        open_set=open_set,
        reaches=reaches,
    )
    meta = {
        "n_gallery": len(gallery_labels),
        "n_heldout": n_heldout,
        "open_set": open_set,
        "vote_within_reach": bool(standards),
    }
    return calibration_from_votes(
        closed,
        opened,
        gallery_labels,
        query_labels,
        model_id=model_id,
        vote_config=vote_config,
        target_precision=target_precision,
        uncertain_precision=uncertain_precision,
        meta=meta,
    )


def calibration_from_votes(
    closed: Votes,
    opened: Votes | None,
    gallery_labels: Sequence[str],
    vote_labels: Sequence[str],
    *,
    model_id: str,
    vote_config: VoteConfig,
    target_precision: float,
    uncertain_precision: float,
    meta: dict,
) -> tuple[Calibration, list[LabelCurve]]:
    """Thresholds of every gallery label from held-out votes (`vote_labels`: the true label
    of each vote), however the votes were made (one split, or folds of the gallery)."""
    entries, curves = {}, []
    for label in sorted(set(gallery_labels)):
        support = sum(1 for truth in vote_labels if truth == label)
        entry, curve = fit_label(
            label, closed, opened, support, target_precision, uncertain_precision
        )
        entries[label] = entry
        if curve is not None:
            curves.append(curve)
    accuracy = float(closed.correct.mean()) if len(closed.correct) else None
    meta = {**meta, "heldout_accuracy": accuracy}
    calibration = Calibration(
        model_id, target_precision, uncertain_precision, vote_config, entries, meta
    )
    return calibration, curves
