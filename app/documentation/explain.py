"""Why a requirement is uncertain or missing, in words a QA user can act on.

Uncertain means a candidate photo exists below the calibrated threshold; the reason says what
would make it documented: more reference photos of the label, a photo that is not confused
with a neighbouring landmark, or a closer match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from app.documentation.predict import Prediction
from app.documentation.thresholds import Calibration, ThresholdPolicy

ReasonCode = Literal[
    "not_calibrated",
    "too_few_references",
    "close_second",
    "low_similarity",
    "below_threshold",
    "no_candidate",
    "no_references",
]
MIN_REFERENCES = 5  # below this a label's vote is too noisy to reach a calibrated precision
CLOSE_SECOND = 0.6  # runner-up share / winner share at or above this: a close second label


@dataclass(frozen=True)
class Reason:
    """A machine-readable code and a sentence for people."""

    code: ReasonCode
    detail: str


def threshold_of(policy: ThresholdPolicy, label: str) -> float | None:
    """The documented threshold of `label` (None: uncalibrated, or never reaches the target)."""
    if not isinstance(policy, Calibration):
        return None
    entry = policy.labels.get(label)
    return None if entry is None else entry.documented


def uncertain_reason(
    label: str,
    score: float,
    policy: ThresholdPolicy,
    vote: Prediction | None,
    references: Mapping[str, int] | None,
) -> Reason:
    """Why a candidate `label` with `score` stayed below its threshold."""
    if not isinstance(policy, Calibration):
        return Reason(
            "not_calibrated",
            "No calibration for the active model, so no prediction is documented automatically.",
        )
    if label not in policy.labels:
        return Reason(
            "not_calibrated",
            f"{label} has no calibrated threshold: calibrate again after adding its references.",
        )
    threshold = threshold_of(policy, label)
    n_refs = None if references is None else references.get(label, 0)
    if n_refs is not None and n_refs < MIN_REFERENCES:
        return Reason(
            "too_few_references",
            f"Only {n_refs} reference photo(s) of {label}; add at least {MIN_REFERENCES}.",
        )
    if threshold is None:
        return Reason(
            "too_few_references",
            f"{label} never reached the target precision in calibration: add reference photos "
            "and calibrate again.",
        )
    if vote is not None and vote.label == label and vote.second_label is not None:
        if score > 0 and vote.second_score / score >= CLOSE_SECOND:
            return Reason(
                "close_second",
                f"Close second label: {vote.second_label} {vote.second_score:.2f} against "
                f"{label} {score:.2f} (needs {threshold:.2f}).",
            )
    if vote is not None:
        sim = (
            ""
            if vote.similarity is None
            else f" (nearest reference similarity {vote.similarity:.2f})"
        )
        return Reason(
            "low_similarity",
            f"Low similarity to the {label} references{sim}: score {score:.2f} is below "
            f"{threshold:.2f}.",
        )
    return Reason("below_threshold", f"Score {score:.2f} is below the threshold {threshold:.2f}.")


def missing_reason(
    labels: tuple[str, ...],
    references: Mapping[str, int] | None = None,
    runner_up: Prediction | None = None,
) -> Reason:
    """No photo voted for any of `labels`: say so, and say when no reference photo of them
    exists at all (then no photo ever can be, until QA staff label some), or which photo came
    closest (`runner_up`: a vote whose second label is one of `labels`)."""
    names = " or ".join(labels)
    if references is not None and not any(references.get(label, 0) for label in labels):
        return Reason(
            "no_references",
            f"No reference photos of {names} yet, so no photo can be recognised as it: "
            "label some reference photos (or label this procedure's photo by hand).",
        )
    if runner_up is not None and runner_up.second_label in labels:
        return Reason(
            "no_candidate",
            f"No photo of this procedure was voted {names}; the closest was voted "
            f"{runner_up.label} {runner_up.score:.2f} with {runner_up.second_label} "
            f"{runner_up.second_score:.2f} second: if it shows {runner_up.second_label}, "
            "label it.",
        )
    return Reason("no_candidate", f"No photo of this procedure was voted {names}.")
