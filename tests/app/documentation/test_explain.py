"""Every uncertain or missing requirement says why; the clearest photo wins a tie."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from app.documentation import (
    Calibration,
    ImageLabel,
    LabelThreshold,
    ProcedureImage,
    Uncalibrated,
    VoteConfig,
    documentation_report,
    load_standards,
)
from app.documentation.predict import Prediction
from app.documentation.quality import image_quality
from training.synthetic import CLASS_NAMES, _image_rng, generate_image

MODEL = "m" * 64
STANDARD = "landmarks-upper-gi"


def _calibration(pylorus: float | None = 0.8) -> Calibration:
    entries = {
        "z-line": LabelThreshold("z-line", 0.8, 0.5, 0.96, 0.7, 10, 9),
        "pylorus": LabelThreshold("pylorus", pylorus, 0.5, None, None, 10, 9),
        "retroflex-stomach": LabelThreshold("retroflex-stomach", 0.8, 0.5, 0.96, 0.7, 10, 9),
    }
    return Calibration(MODEL, 0.95, 0.5, VoteConfig(), entries)


def _photo(image_id: str, label: str, score: float, **vote: object) -> ProcedureImage:
    details = Prediction(label, score, "uncertain", MODEL, **vote) if vote else None
    return ProcedureImage(image_id, [ImageLabel(label, "predicted", score, MODEL)], details)


def _reasons(images, policy=None, references=None) -> dict:
    standard = load_standards()[STANDARD]
    report = documentation_report(standard, images, policy or _calibration(), references=references)
    return {r.requirement.id: (r.status, r.reason and r.reason.code) for r in report.results}


REFS = {"z-line": 12, "pylorus": 12, "retroflex-stomach": 2}


def test_each_uncertain_requirement_names_candidate_threshold_and_reason() -> None:
    images = [
        # runner-up share close to the winner's: a close second label
        _photo("a", "z-line", 0.55, second_label="pylorus", second_score=0.45, similarity=0.9),
        # clear vote but a far match: low similarity
        _photo("b", "pylorus", 0.62, second_label="z-line", second_score=0.1, similarity=0.4),
        # a label with two reference photos: too few references
        _photo("c", "retroflex-stomach", 0.65, second_label="z-line", second_score=0.35),
    ]
    assert _reasons(images, references=REFS) == {
        "z-line": ("uncertain", "close_second"),
        "pylorus": ("uncertain", "low_similarity"),
        "retroflex-stomach": ("uncertain", "too_few_references"),
    }
    standard = load_standards()[STANDARD]
    report = documentation_report(standard, images, _calibration(), references=REFS)
    z = report.results[0]
    assert (z.best.image_id, z.best.label, z.best.score, z.best.threshold) == (
        "a",
        "z-line",
        0.55,
        0.8,
    )
    assert "pylorus 0.45" in z.reason.detail and "0.80" in z.reason.detail
    assert "Only 2 reference photo(s)" in report.results[2].reason.detail


def test_missing_uncalibrated_and_never_reaching_target() -> None:
    assert _reasons([]) == dict.fromkeys(
        ("z-line", "pylorus", "retroflex-stomach"), ("missing", "no_candidate")
    )
    # a label whose calibration never reached the target precision: more references needed
    no_threshold = _reasons([_photo("a", "pylorus", 0.99)], _calibration(pylorus=None), REFS)
    assert no_threshold["pylorus"] == ("uncertain", "too_few_references")
    uncalibrated = _reasons([_photo("a", "z-line", 1.0)], Uncalibrated(MODEL))
    assert uncalibrated["z-line"] == ("uncertain", "not_calibrated")
    # documented requirements carry no reason
    assert _reasons([_photo("a", "z-line", 0.9)])["z-line"] == ("documented", None)


def _synthetic(i: int) -> Image.Image:
    ci = CLASS_NAMES.index("synthetic-z-line")
    return generate_image(ci, _image_rng(7, ci, i), 160)


def test_sharpness_and_exposure_rank_a_blurred_or_dark_copy_lower() -> None:
    sharp = _synthetic(0)
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    dark = Image.eval(sharp, lambda v: v // 6)
    assert image_quality(sharp) > 2 * image_quality(blurred)
    assert image_quality(sharp) > image_quality(dark)
    assert image_quality(Image.new("RGB", (64, 64))) == 0.0


@pytest.mark.parametrize("order", [("blurred", "sharp"), ("sharp", "blurred")])
def test_best_evidence_tie_is_broken_by_image_quality(order) -> None:
    sharp = _synthetic(1)
    photos = {"sharp": sharp, "blurred": sharp.filter(ImageFilter.GaussianBlur(2.5))}
    asked: list[str] = []

    def quality(image_id: str) -> float:
        asked.append(image_id)
        return image_quality(photos[image_id])

    images = [_photo(name, "z-line", 0.9) for name in order]
    images.append(_photo("weaker", "z-line", 0.85))  # lower score: never asked for its quality
    standard = load_standards()[STANDARD]
    report = documentation_report(standard, images, _calibration(), quality=quality)
    assert report.results[0].best.image_id == "sharp"
    assert sorted(asked) == ["blurred", "sharp"]
    # without quality the earliest photo of equals wins (the old rule)
    plain = documentation_report(standard, images, _calibration())
    assert plain.results[0].best.image_id == order[0]
    assert np.isfinite(image_quality(sharp))
