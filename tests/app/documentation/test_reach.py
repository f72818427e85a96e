"""Votes within the procedure's reach, calibration fitted the same way (plain vectors)."""

from __future__ import annotations

import numpy as np
import pytest

from app.documentation import (
    Calibration,
    ExactSearch,
    LabelThreshold,
    LandmarkPredictor,
    ReferenceGallery,
    VoteConfig,
    fit_calibration,
    load_standards,
)
from app.documentation.calibrate import query_reaches
from app.documentation.reach import reach_of

UPPER = ("z-line", "pylorus", "retroflex-stomach")
COLON = ("cecum", "ileum", "retroflex-rectum")
MODEL = "m" * 64


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _gallery(rng: np.random.Generator, per_label: int = 8) -> tuple[ReferenceGallery, dict]:
    """Six landmark clusters in 16-D, close enough that neighbours of one reach the others."""
    centres = {lab: rng.normal(size=16) for lab in (*UPPER, *COLON)}
    vecs, labels = [], []
    for lab, centre in centres.items():
        vecs.append(centre + 0.8 * rng.normal(size=(per_label, 16)))
        labels += [lab] * per_label
    vectors = _unit(np.concatenate(vecs))
    search = ExactSearch(np.arange(len(labels)), vectors)
    return ReferenceGallery(search, dict(enumerate(labels))), centres


def _calibration() -> Calibration:
    entries = {lab: LabelThreshold(lab, 0.9, 0.5, 0.95, 0.5, 10, 10) for lab in (*UPPER, *COLON)}
    return Calibration(MODEL, 0.95, 0.5, VoteConfig(k=10, temperature=0.05), entries)


def test_reach_excludes_only_the_other_kinds_landmarks() -> None:
    standards = load_standards()
    upper, colon = reach_of(standards, "upper_gi"), reach_of(standards, "colonoscopy")
    assert set(COLON) <= upper.excluded and not set(UPPER) & upper.excluded
    assert set(UPPER) <= colon.excluded and not set(COLON) & colon.excluded
    # a label no standard names (a finding) stays in reach of both; configured general too
    assert upper.allows("polyp") and colon.allows("polyp")
    assert reach_of(standards, "upper_gi", general=["ileum"]).allows("ileum")


@pytest.mark.parametrize(
    ("kind", "own", "other"), [("upper_gi", UPPER, COLON), ("colonoscopy", COLON, UPPER)]
)
@pytest.mark.parametrize("mode", ["mask", "renormalise"])
def test_a_procedure_never_gets_another_kinds_landmark(kind, own, other, mode) -> None:
    rng = np.random.default_rng(3)
    gallery, centres = _gallery(rng)
    predictor = LandmarkPredictor(gallery, _calibration(), VoteConfig(10, 0.05, reach=mode))
    reach = reach_of(load_standards(), kind)
    # photos that look like every landmark of both kinds, and in between
    queries = _unit(
        np.concatenate(
            [c + 0.8 * rng.normal(size=(40, 16)) for c in centres.values()]
            + [rng.normal(size=(60, 16))]
        )
    )
    preds = predictor.predict(queries, reach)
    # mask: a photo whose top k are all out of reach has no candidate rather than a wrong one
    assert all(p.label in own or (mode == "mask" and p.label is None) for p in preds)
    assert {p.label for p in preds} >= set(own)
    # the photos of the other kind's landmarks are flagged, and only out-of-reach winners are
    flagged = [p for p in preds if p.unexpected]
    assert flagged and all(p.gallery_label in other for p in flagged)
    assert all(p.unexpected == (p.gallery_label in other) for p in preds)
    # whole-gallery votes (kind unknown) do give the other kind's landmarks
    assert {p.label for p in predictor.predict(queries)} & set(other)


def _pylorus_near_ileum(reach: str) -> tuple[LandmarkPredictor, np.ndarray]:
    """The issue's case: a pylorus photo whose nearest references are mostly ileum ones."""
    pylorus, ileum = np.eye(4)[0], np.eye(4)[1]
    refs = _unit(np.stack([pylorus + 0.45 * ileum] * 3 + [ileum + 0.05 * pylorus] * 4))
    labels = ["pylorus"] * 3 + ["ileum"] * 4
    gallery = ReferenceGallery(ExactSearch(np.arange(7), refs), dict(enumerate(labels)))
    config = VoteConfig(k=5, temperature=0.05, reach=reach)
    return LandmarkPredictor(gallery, _calibration(), config), _unit(
        (ileum + 0.3 * pylorus)[None, :]
    )


def test_renormalised_vote_hands_the_impossible_landmarks_share_to_the_in_reach_ones() -> None:
    predictor, query = _pylorus_near_ileum("renormalise")
    (whole,) = predictor.predict(query)
    (inside,) = predictor.predict(query, reach_of(load_standards(), "upper_gi"))
    assert whole.label == "ileum" and not whole.unexpected
    # the top 5 in-reach neighbours are the 3 pylorus references: they take every share
    assert inside.label == "pylorus" and inside.score == pytest.approx(1.0)
    assert inside.unexpected and inside.gallery_label == "ileum"


def test_masked_vote_never_credits_an_out_of_reach_neighbours_weight() -> None:
    predictor, query = _pylorus_near_ileum("mask")
    (whole,) = predictor.predict(query)
    (inside,) = predictor.predict(query, reach_of(load_standards(), "upper_gi"))
    assert whole.label == "ileum" and not whole.unexpected
    # same whole-gallery top 5 and shares; the ileum share is simply not credited to anyone
    assert whole.second_label == "pylorus"
    assert inside.label == "pylorus" and inside.score == pytest.approx(whole.second_score)
    assert inside.score + whole.score == pytest.approx(1.0) and inside.score < 0.5
    assert inside.second_label is None  # ileum is out of reach, not a runner-up
    assert inside.unexpected and inside.gallery_label == "ileum"
    (renormalised,) = _pylorus_near_ileum("renormalise")[0].predict(
        query, reach_of(load_standards(), "upper_gi")
    )
    assert renormalised.score > inside.score


def test_reach_mode_is_stored_with_the_calibration_and_old_ones_load() -> None:
    saved = _calibration().to_dict()
    assert saved["vote"]["reach"] == VoteConfig().reach
    mode = "renormalise" if VoteConfig().reach == "mask" else "mask"
    other = Calibration.from_dict({**saved, "vote": {**saved["vote"], "reach": mode}})
    assert other.vote.reach == mode
    # saved before the field existed: loads with the default mode
    old = {**saved, "vote": {"k": 10, "temperature": 0.05}}
    assert Calibration.from_dict(old).vote == VoteConfig(k=10, temperature=0.05)
    with pytest.raises(ValueError, match="reach"):
        VoteConfig(reach="everything")


def test_calibration_votes_within_reach_like_the_service() -> None:
    standards = load_standards()
    rows, reaches = query_reaches(["ileum", "polyp", "z-line"], standards)
    # a landmark is voted in its kind's reach; a label no standard names once per kind
    assert rows == [0, 1, 1, 2]
    assert "z-line" in reaches[0] and "ileum" in reaches[3]
    assert {frozenset(r) for r in reaches[1:3]} == {reaches[0], reaches[3]}

    rng = np.random.default_rng(5)
    gallery, centres = _gallery(rng, per_label=10)
    g_labels = list(gallery.labels.values())
    g_vecs = np.stack([gallery.index._vectors[i] for i in gallery.labels])
    q_labels = [lab for lab in centres for _ in range(10)]
    q_vecs = _unit(np.concatenate([c + 0.8 * rng.normal(size=(10, 16)) for c in centres.values()]))
    within, _ = fit_calibration(g_vecs, g_labels, q_vecs, q_labels, model_id=MODEL)
    whole, _ = fit_calibration(g_vecs, g_labels, q_vecs, q_labels, model_id=MODEL, standards={})
    assert within.meta["vote_within_reach"] and not whole.meta["vote_within_reach"]
    # votes confined to three labels are right more often than votes over six
    assert within.meta["heldout_accuracy"] > whole.meta["heldout_accuracy"]
