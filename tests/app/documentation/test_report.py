"""Report rules on plain data: manual labels win, stale models are ignored, statuses and order."""

from __future__ import annotations

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

MODEL = "m" * 64


def _calibration() -> Calibration:
    entry = {
        label: LabelThreshold(label, 0.8, 0.5, 0.96, 0.7, 10, 9)
        for label in ("cecum", "ileum", "retroflex-rectum")
    }
    return Calibration(MODEL, 0.95, 0.5, VoteConfig(), entry)


def _predicted(image_id: str, label: str, score: float, model: str = MODEL) -> ProcedureImage:
    return ProcedureImage(image_id, [ImageLabel(label, "predicted", score, model)])


def test_statuses_best_photo_and_manual_precedence() -> None:
    standard = load_standards()["landmarks-colonoscopy"]
    images = [
        _predicted("a", "cecum", 0.85),
        _predicted("b", "cecum", 0.95),
        _predicted("c", "ileum", 0.6),  # between uncertain and documented thresholds
        _predicted("d", "retroflex-rectum", 0.99),
        # a manual label overrides this image's (wrong, confident) prediction
        ProcedureImage(
            "e",
            [
                ImageLabel("retroflex-rectum", "predicted", 0.99, MODEL),
                ImageLabel("ileum", "manual"),
            ],
        ),
    ]
    report = documentation_report(standard, images, _calibration())
    best = {r.requirement.id: (r.status, r.best.image_id, r.best.source) for r in report.results}
    assert best == {
        "cecum": ("documented", "b", "predicted"),
        "ileum": ("documented", "e", "manual"),
        "retroflex-rectum": ("documented", "d", "predicted"),
    }
    assert report.complete and report.completeness == 1.0


def test_uncertain_missing_and_stale_model() -> None:
    standard = load_standards()["landmarks-colonoscopy"]
    images = [
        _predicted("a", "cecum", 0.6),
        _predicted("b", "ileum", 0.99, model="old-model"),  # another model: ignored
        _predicted("c", "retroflex-rectum", 0.3),  # below even the uncertain threshold
        _predicted("d", "unrecognised", 0.0),
    ]
    report = documentation_report(standard, images, _calibration())
    # any candidate below its threshold is "uncertain" (shown, with why); missing: none at all
    assert report.by_status("uncertain") == ["cecum", "retroflex-rectum"]
    assert report.by_status("missing") == ["ileum"]
    assert report.completeness == 0.0
    by_id = {r.requirement.id: r for r in report.results}
    low = by_id["retroflex-rectum"]
    assert (low.best.image_id, low.best.score, low.best.threshold) == ("c", 0.3, 0.8)
    assert low.reason.code == "below_threshold" and "0.80" in low.reason.detail
    assert by_id["ileum"].best is None and by_id["ileum"].reason.code == "no_candidate"
    assert by_id["cecum"].reason is not None


def test_uncalibrated_model_never_documents_automatically() -> None:
    standard = load_standards()["landmarks-colonoscopy"]
    images = [_predicted("a", "cecum", 1.0), ProcedureImage("b", [ImageLabel("ileum", "manual")])]
    report = documentation_report(standard, images, Uncalibrated(MODEL))
    assert report.by_status("uncertain") == ["cecum"]
    assert report.by_status("documented") == ["ileum"]


def test_optional_requirements_do_not_count_towards_completeness() -> None:
    standard = load_standards()["esge-colonoscopy-9"]
    report = documentation_report(standard, [], _calibration())
    assert len(report.required) == 9 and len(report.results) == 10
    assert report.completeness == 0.0


def test_calibrations_are_stored_per_model(tmp_path) -> None:
    from app.documentation import load_calibration, save_calibration

    path = tmp_path / "calibration.json"
    first = _calibration()
    second = Calibration("other-model", 0.9, 0.5, VoteConfig(k=5), {}, {"synthetic": True})
    save_calibration(path, first)
    save_calibration(path, second)
    assert load_calibration(path, MODEL) == first
    assert load_calibration(path, "other-model") == second
    assert load_calibration(path, "missing") is None


def test_missing_requirement_without_any_reference_says_so() -> None:
    from app.documentation.explain import missing_reason

    assert missing_reason(("cecum",), {"cecum": 0, "ileum": 4}).code == "no_references"
    assert missing_reason(("cecum",), {"cecum": 3}).code == "no_candidate"
    assert missing_reason(("cecum",), None).code == "no_candidate"  # counts unknown
