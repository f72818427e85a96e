"""Guided labelling without the service: suggestions, the vocabulary, gallery rows and the
cross-validated re-calibration (synthetic votes and vectors)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from app.documentation import labels
from app.documentation.loader import load_standards
from app.documentation.predict import Prediction
from app.documentation.recalibrate import cross_fitted, folds_of
from app.documentation.reference_stats import landmark_rows, overview_labels, stale
from app.documentation.suggest import Voted, judge, merged, novel, rank, unreferenced_of
from app.documentation.thresholds import Calibration, LabelThreshold, Uncalibrated
from app.documentation.vocabulary import SHORTCUT_KEYS, shipped_vocabulary, shortcuts
from app.documentation.vote import VoteConfig


def _voted(
    image_id: int,
    label: str,
    score: float,
    second: str | None,
    s2: float,
    *,
    kind: str = "upper_gi",
    similarity: float | None = None,
    recognition: str = "uncertain",
) -> Voted:
    image = SimpleNamespace(id=image_id)  # only the id is read for ranking
    vote = Prediction(label, score, recognition, "m", second, s2, similarity)  # type: ignore[arg-type]
    return Voted(image, kind, vote)  # type: ignore[arg-type]


def _calibration(**thresholds: float | None) -> Calibration:
    entries = {
        name: LabelThreshold(name, t, t, 0.9 if t else None, 0.8 if t else None, 20, 18)
        for name, t in thresholds.items()
    }
    return Calibration("m", 0.9, 0.5, VoteConfig(), entries, {"n_gallery": 40})


def test_votes_nearest_a_threshold_or_most_split_come_first() -> None:
    policy = _calibration(**{"z-line": 0.60, "pylorus": 0.50, "polyp": None})
    voted = [
        _voted(1, "z-line", 0.95, "pylorus", 0.05),  # sure: far from threshold, not split
        _voted(2, "z-line", 0.58, "pylorus", 0.20),  # 0.02 below its threshold
        _voted(3, "pylorus", 0.48, "z-line", 0.46),  # split by 0.02, 0.02 below threshold
        _voted(4, "pylorus", 0.51, "z-line", 0.45),  # split 0.06, threshold gap 0.01
        _voted(5, "polyp", 0.51, "ulcer", 0.49),  # split between two findings: last
    ]
    ranked = rank(voted, policy, {"z-line", "pylorus"})
    assert [s.image.id for s in ranked] == [4, 3, 2, 1, 5]
    assert ranked[0].why == "threshold" and "0.01 above its threshold 0.50" in ranked[0].detail
    split = judge(_voted(6, "z-line", 0.40, "pylorus", 0.38), None)
    assert split.why == "split" and "pylorus 0.38" in split.detail
    by_z = rank(voted, policy, {"z-line", "pylorus"}, label="z-line")
    assert [s.image.id for s in by_z] == [4, 3, 2, 1]


def test_photos_unlike_every_reference_are_suggested_while_a_landmark_has_none() -> None:
    standards = load_standards()
    counts = {"z-line": 5, "pylorus": 5, "cecum": 5, "ileum": 5}
    gaps = unreferenced_of(standards, counts)
    assert gaps == {"upper_gi": ["retroflex-stomach"], "colonoscopy": ["retroflex-rectum"]}
    counts["appendiceal-orifice"] = 0  # cecum already covers that requirement
    assert unreferenced_of(standards, {**counts, "retroflex-stomach": 1}) == {
        "colonoscopy": ["retroflex-rectum"]
    }
    voted = [
        _voted(1, "z-line", 0.9, None, 0.0, similarity=0.5, recognition="recognised"),
        _voted(2, "polyp", 0.5, "z-line", 0.2, similarity=0.6),
        _voted(3, "polyp", 0.5, "z-line", 0.2, similarity=0.9),
        _voted(4, "ulcer", 0.5, None, 0.0, kind="colonoscopy", similarity=0.7),
        _voted(5, "ulcer", 0.5, None, 0.0, kind="other", similarity=0.1),  # no standard
    ]
    unlike = novel(voted, gaps, 2)
    assert [s.image.id for s in unlike] == [2, 4]  # never a recognised photo
    assert unlike[0].why == "novel" and "retroflex-stomach" in unlike[0].detail
    assert [s.image.id for s in merged(unlike, rank(voted, Uncalibrated("m"), set()), 4)][:2] == [
        2,
        4,
    ]
    assert len({s.image.id for s in merged(unlike, rank(voted, Uncalibrated("m"), set()), 9)}) == 5


def test_without_calibration_only_splits_rank() -> None:
    ranked = rank(
        [_voted(1, "z-line", 0.9, "pylorus", 0.1), _voted(2, "z-line", 0.5, "pylorus", 0.45)],
        Uncalibrated("m"),
        {"z-line", "pylorus"},
    )
    assert [s.image.id for s in ranked] == [2, 1] and {s.why for s in ranked} == {"split"}
    lone = judge(_voted(3, "z-line", 1.0, None, 0.0), None)
    assert lone.why == "split" and lone.margin == 1.0


def test_labels_come_only_from_the_vocabulary() -> None:
    vocabulary = shipped_vocabulary()
    standards = load_standards()
    for standard in standards.values():
        assert standard.labels <= set(vocabulary.landmarks)
    assert "polyp" in vocabulary.general and "z-line" not in vocabulary.general
    for good in ("z-line", "retroflex-rectum", "polyp", "polyps"):
        assert labels.check_label(good) == good
    with pytest.raises(labels.LabelError) as caught:
        labels.check_label("zline")
    assert "z-line" in caught.value.vocabulary and "z-line" in str(caught.value)
    with pytest.raises(labels.LabelError) as caught:
        labels.check_label("Z Line")
    assert caught.value.vocabulary == ()  # the form was wrong: no list needed


def test_shortcuts_follow_the_standard_then_general_labels() -> None:
    vocabulary = shipped_vocabulary()
    upper = load_standards()["landmarks-upper-gi"]
    ordered = vocabulary.for_standard(upper)
    assert ordered[:3] == ("z-line", "pylorus", "retroflex-stomach")
    assert set(ordered) == set(vocabulary.labels)  # every label stays pickable
    keys = shortcuts(ordered)
    assert keys[:3] == [("1", "z-line"), ("2", "pylorus"), ("3", "retroflex-stomach")]
    assert len(keys) == len(SHORTCUT_KEYS) and "j" not in dict(keys) and "k" not in dict(keys)


def test_gallery_rows_say_what_each_landmark_needs() -> None:
    standards = load_standards()
    policy = _calibration(**{"z-line": 0.6, "pylorus": None, "cecum": 0.5})
    counts = {"z-line": 12, "pylorus": 9, "cecum": 3, "polyp": 7}
    order = overview_labels(standards, counts, policy)
    assert order[:3] == ["cecum", "appendiceal-orifice", "ileocecal-valve"]  # colonoscopy first
    assert "polyp" in order and "retroflex-stomach" in order
    rows = {r.label: r for r in landmark_rows(order, standards, counts, policy)}
    assert rows["z-line"].status == "ok" and "0.60" in rows["z-line"].advice
    assert rows["pylorus"].status == "unreachable"
    assert rows["cecum"].status == "too_few_references"
    assert rows["retroflex-stomach"].status == "no_references"
    assert rows["appendiceal-orifice"].status == "alternative"  # cecum covers its requirement
    assert "cecum" in rows["appendiceal-orifice"].advice
    bare = landmark_rows(["appendiceal-orifice"], standards, {}, policy)
    assert bare[0].status == "no_references"
    assert rows["polyp"].status == "not_calibrated" and rows["polyp"].general
    assert "landmarks-upper-gi" in rows["z-line"].standards
    assert stale(policy, counts) is not None and stale(policy, {"z-line": 40}) is None
    assert stale(Uncalibrated("m"), counts) is None


def test_cross_fitted_thresholds_separate_two_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = {"z-line": np.eye(8)[0], "pylorus": np.eye(8)[1], "polyp": np.eye(8)[2]}
    names, vecs = [], []
    for name, centre in centres.items():
        for _ in range(15):
            v = centre + rng.normal(0, 0.15, 8)
            vecs.append(v / np.linalg.norm(v))
            names.append(name)
    fold = folds_of(names, 5)
    for name in centres:  # each label spread evenly over the folds
        counts = np.bincount(fold[np.array(names) == name], minlength=5)
        assert counts.min() == counts.max() == 3
    calibration = cross_fitted(
        np.array(vecs, dtype=np.float32),
        names,
        load_standards(),
        model_id="m",
        target_precision=0.9,
        uncertain_precision=0.5,
        # a warm vote: a query voted without its own class (open set) splits between the
        # other two, far below the near-unanimous votes of its own class
        vote_config=VoteConfig(temperature=1.0),
    )
    assert set(calibration.labels) == set(centres)
    z = calibration.labels["z-line"]
    assert z.documented is not None and z.precision >= 0.9 and z.recall >= 0.5
    assert calibration.meta["n_gallery"] == 45 and "cross-validation" in calibration.meta["method"]
