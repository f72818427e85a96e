"""Per-procedure documentation report: which photo documents each requirement, what is missing.

A still picked from a procedure video counts only through its pick: accepted by QA, it is
documented evidence of the pick's label (source "video"); pending or rejected, it is no
evidence at all, whatever labels the image carries (the ingest hook's prediction on a still
must not document a requirement behind the reviewer's back). Photos come before video.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.documentation.explain import Reason, missing_reason, threshold_of, uncertain_reason
from app.documentation.predict import Prediction
from app.documentation.schema import Requirement, Standard
from app.documentation.thresholds import ThresholdPolicy

LabelSource = Literal["manual", "reference", "predicted"]
EvidenceSource = Literal["manual", "reference", "predicted", "video"]
Status = Literal["documented", "uncertain", "missing"]
_HUMAN: frozenset[str] = frozenset({"manual", "reference"})


@dataclass(frozen=True)
class ImageLabel:
    """One label row of an image (mirrors the labels table, without the DB)."""

    label: str
    source: LabelSource
    score: float | None = None
    model_id: str | None = None


@dataclass(frozen=True)
class VideoPick:
    """The image is a still picked from a video for a requirement (a video_images row)."""

    label: str
    review: Literal["needs_review", "accepted", "rejected"]
    t_ms: int
    score: float
    video_id: Hashable | None = None
    requirement: str | None = None


@dataclass(frozen=True)
class ProcedureImage:
    """An image of the procedure with its labels; `image_id` is whatever the caller shows.

    With `picks` (a still from a video) only its accepted picks count, never its labels."""

    image_id: Hashable
    labels: Sequence[ImageLabel]
    vote: Prediction | None = None  # the vote's details, when known: explains "uncertain"
    picks: Sequence[VideoPick] = ()


@dataclass(frozen=True)
class Evidence:
    """What one image says about one label: the score and how far it can be trusted."""

    image_id: Hashable
    label: str
    score: float
    status: Literal["documented", "uncertain"]
    source: EvidenceSource
    threshold: float | None = None
    vote: Prediction | None = field(default=None, compare=False, repr=False)
    pick: VideoPick | None = None  # source "video": the accepted pick (video, t_ms)


@dataclass(frozen=True)
class RequirementResult:
    """One requirement of the standard: its status, the best photo (the candidate when
    uncertain, None when missing) and, unless documented, the reason."""

    requirement: Requirement
    status: Status
    best: Evidence | None
    reason: Reason | None = None


@dataclass(frozen=True)
class DocumentationReport:
    """Every requirement's result and the share of required ones documented."""

    standard: Standard
    results: tuple[RequirementResult, ...]

    @property
    def required(self) -> tuple[RequirementResult, ...]:
        return tuple(r for r in self.results if r.requirement.required)

    @property
    def completeness(self) -> float:
        """Documented required requirements / required requirements (1.0 when none required)."""
        required = self.required
        if not required:
            return 1.0
        return sum(r.status == "documented" for r in required) / len(required)

    @property
    def complete(self) -> bool:
        return all(r.status == "documented" for r in self.required)

    def by_status(self, status: Status) -> list[str]:
        """Requirement ids with the given status, in the standard's order."""
        return [r.requirement.id for r in self.results if r.status == status]


def image_evidence(image: ProcedureImage, policy: ThresholdPolicy) -> list[Evidence]:
    """The labels an image counts for: human labels win; else the active model's prediction.

    Predictions of another model (a stale model id) are ignored, so reports follow the active
    model once its predictions are written. A still from a video counts only through its
    accepted picks (source "video").
    """
    if image.picks:
        return _pick_evidence(image)
    human = [lab for lab in image.labels if lab.source in _HUMAN]
    if human:
        return [Evidence(image.image_id, lab.label, 1.0, "documented", lab.source) for lab in human]
    out = []
    for lab in image.labels:
        if lab.source != "predicted":
            continue
        if policy.model_id is not None and lab.model_id != policy.model_id:
            continue
        score = float(lab.score or 0.0)
        # below the threshold the candidate still counts as "uncertain": QA sees it and why
        verdict = policy.recognition(lab.label, score)
        status = "documented" if verdict == "recognised" else "uncertain"
        threshold = threshold_of(policy, lab.label)
        vote = image.vote if image.vote is not None and image.vote.label == lab.label else None
        out.append(Evidence(image.image_id, lab.label, score, status, lab.source, threshold, vote))
    return out


def _pick_evidence(image: ProcedureImage) -> list[Evidence]:
    """One documented evidence per label of the still's accepted picks (the best-scored)."""
    best: dict[str, VideoPick] = {}
    for pick in image.picks:
        if pick.review != "accepted":
            continue
        if pick.label not in best or pick.score > best[pick.label].score:
            best[pick.label] = pick
    return [
        Evidence(image.image_id, p.label, float(p.score), "documented", "video", pick=p)
        for p in best.values()
    ]


def _rank(evidence: Evidence) -> tuple[bool, bool, bool, float]:
    """Documented before uncertain, a photo before a video still, human before predicted,
    then the higher score."""
    return (
        evidence.status == "documented",
        evidence.source != "video",
        evidence.source in _HUMAN,
        evidence.score,
    )


Quality = Callable[[Hashable], float]


def _best(accepted: list[Evidence], quality: Quality | None) -> Evidence:
    """The highest-ranked photo; equals go to the clearer photo (then the earliest image)."""
    top = max(_rank(ev) for ev in accepted)
    tied = [ev for ev in accepted if _rank(ev) == top]
    if len(tied) == 1 or quality is None:
        return tied[0]
    return max(tied, key=lambda ev: quality(ev.image_id))  # max keeps the first of equals


def _runner_up(votes: Sequence[Prediction], labels: tuple[str, ...]) -> Prediction | None:
    """The vote with one of `labels` as its strongest second label (explains "missing")."""
    seconds = [v for v in votes if v.second_label in labels]
    return max(seconds, key=lambda v: v.second_score) if seconds else None


def _result(
    requirement: Requirement,
    evidence: Sequence[Evidence],
    policy: ThresholdPolicy,
    quality: Quality | None,
    references: Mapping[str, int] | None,
    votes: Sequence[Prediction] = (),
) -> RequirementResult:
    accepted = [ev for ev in evidence if ev.label in requirement.labels]
    if not accepted:
        close = _runner_up(votes, requirement.labels)
        reason = missing_reason(requirement.labels, references, close)
        return RequirementResult(requirement, "missing", None, reason)
    best = _best(accepted, quality)
    if best.status == "documented":
        return RequirementResult(requirement, "documented", best)
    reason = uncertain_reason(best.label, best.score, policy, best.vote, references)
    return RequirementResult(requirement, "uncertain", best, reason)


def documentation_report(
    standard: Standard,
    images: Sequence[ProcedureImage],
    policy: ThresholdPolicy,
    *,
    quality: Quality | None = None,
    references: Mapping[str, int] | None = None,
) -> DocumentationReport:
    """Each requirement with its best photo, status and reason, in the standard's order.

    `quality(image_id)` breaks ties between equally ranked photos (asked only for those);
    `references` (reference photos per label) lets "uncertain" say when there are too few.
    """
    evidence = [ev for image in images for ev in image_evidence(image, policy)]
    # fresh votes of photos that count through their prediction (no human label, no still)
    votes = [
        image.vote
        for image in images
        if image.vote is not None
        and not image.picks
        and not any(lab.source in _HUMAN for lab in image.labels)
    ]
    return DocumentationReport(
        standard,
        tuple(
            _result(req, evidence, policy, quality, references, votes)
            for req in standard.requirements
        ),
    )


def requirements_fulfilled(
    standard: Standard, image: ProcedureImage, policy: ThresholdPolicy
) -> list[RequirementResult]:
    """The requirements one (newly ingested) photo documents or makes uncertain on its own."""
    report = documentation_report(standard, [image], policy)
    return [r for r in report.results if r.status != "missing"]
