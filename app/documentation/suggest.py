"""Suggested to label: the photos whose label would teach the gallery the most.

A reviewer's label helps most where the model is least sure: a vote just above or below the
label's calibrated threshold (a few more references move it either way), or a vote split
between two landmarks (the gallery cannot tell them apart there). Each unlabelled procedure
photo is re-voted from its stored vector, within its procedure's reach, and ranked by the
smaller of the two margins; only the newest photos are considered, so a page stays fast on
a large archive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Image, Label, Procedure, VideoImage
from app.documentation.explain import Reason, threshold_of, uncertain_reason
from app.documentation.predict import Prediction
from app.documentation.schema import Standard
from app.documentation.service import Documentation
from app.documentation.thresholds import ThresholdPolicy
from app.services import vectors

POOL = 2_000  # newest unlabelled photos re-voted per request
TOP = 10
NOVEL = 3  # of the top, photos unlike every reference while a landmark has none
Why = Literal["threshold", "split", "novel"]


@dataclass(frozen=True)
class Voted:
    """One unlabelled procedure photo and its vote within the procedure's reach."""

    image: Image
    kind: str
    vote: Prediction


@dataclass(frozen=True)
class Suggestion:
    """A photo worth labelling: its vote, the margin that makes it so, and why in words."""

    image: Image
    kind: str
    vote: Prediction
    threshold: float | None
    why: Why
    margin: float
    detail: str


def candidates(
    session: Session, kinds: Sequence[str], limit: int = POOL
) -> list[tuple[Image, str]]:
    """The newest live photos of procedures of `kinds` that carry no human label and are not
    video stills (a still is reviewed on its video page)."""
    human = sa.exists().where(Label.image_id == Image.id, Label.source.in_(("manual", "reference")))
    still = sa.exists().where(VideoImage.image_id == Image.id)
    q = (
        sa.select(Image, Procedure.kind)
        .join(Procedure, Procedure.id == Image.procedure_id)
        .where(Image.deleted_at.is_(None), Procedure.kind.in_(list(kinds)), ~human, ~still)
        .order_by(Image.id.desc())
        .limit(limit)
    )
    return [(img, kind) for img, kind in session.execute(q)]


def votes(docs: Documentation, session: Session, limit: int = POOL) -> list[Voted]:
    """Fresh votes of the candidate photos (none while the gallery is empty), newest first."""
    model_id, dim = docs.model
    predictor = docs.predictor(session, model_id, dim)
    kinds = sorted({s.procedure_kind for s in docs.standards.values()})
    if predictor is None or not kinds:
        return []
    pool = candidates(session, kinds, limit)
    out: list[Voted] = []
    for kind in sorted({k for _, k in pool}):
        images = {img.id: img for img, k in pool if k == kind}
        reach = docs.reach(kind)
        ids = np.array(sorted(images), dtype=np.int64)
        for chunk_ids, vecs in vectors.vectors_for(session, model_id, dim, ids):
            for image_id, vote in zip(
                chunk_ids.tolist(), predictor.predict(vecs, reach), strict=True
            ):
                if vote.label is not None:
                    out.append(Voted(images[int(image_id)], kind, vote))
    out.sort(key=lambda v: -v.image.id)
    return out


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def judge(voted: Voted, threshold: float | None) -> Suggestion:
    """How close `voted` is to deciding differently: near the threshold, or split."""
    vote = voted.vote
    gap = math.inf if threshold is None else abs(vote.score - threshold)
    split = vote.score - vote.second_score if vote.second_label is not None else math.inf
    if gap <= split and threshold is not None:
        side = "below" if vote.score < threshold else "above"
        detail = (
            f"{vote.label} {_fmt(vote.score)} is {_fmt(gap)} {side} its threshold "
            f"{_fmt(threshold)}: a label here confirms the threshold or moves it."
        )
        return Suggestion(voted.image, voted.kind, vote, threshold, "threshold", gap, detail)
    detail = (
        f"Vote split between {vote.label} {_fmt(vote.score)} and {vote.second_label} "
        f"{_fmt(vote.second_score)}: a label tells the gallery which it is."
    )
    margin = split if math.isfinite(split) else 1.0
    return Suggestion(voted.image, voted.kind, vote, threshold, "split", margin, detail)


def rank(
    voted: Sequence[Voted],
    policy: ThresholdPolicy,
    landmarks: Set[str],
    label: str | None = None,
) -> list[Suggestion]:
    """Every vote judged, smallest margin first (then the newest photo); with `label` only
    votes won by it or with it as the runner-up. Votes about one of `landmarks` (labels some
    standard asks for) come before votes between general labels, which no checklist counts."""
    chosen = [v for v in voted if label is None or label in (v.vote.label, v.vote.second_label)]
    judged = [judge(v, threshold_of(policy, v.vote.label or "")) for v in chosen]

    def key(s: Suggestion) -> tuple[bool, float, int]:
        about = {s.vote.label, s.vote.second_label if s.why == "split" else None}
        return (not (about & landmarks), s.margin, -s.image.id)

    return sorted(judged, key=key)


def novel(
    voted: Sequence[Voted], unreferenced: Mapping[str, Sequence[str]], n: int = NOVEL
) -> list[Suggestion]:
    """The `n` unrecognised photos least like any reference, among procedures of a kind
    whose standards name landmarks without a reference photo (`unreferenced`: kind -> those
    landmarks): no vote can ever name such a landmark, but a photo far from every reference
    may show it."""
    pool = [
        v
        for v in voted
        if unreferenced.get(v.kind)
        and v.vote.similarity is not None
        and v.vote.recognition != "recognised"  # a recognised photo shows its landmark
    ]
    pool.sort(key=lambda v: (v.vote.similarity, -v.image.id))
    out = []
    for v in pool[:n]:
        names = ", ".join(unreferenced[v.kind])
        detail = (
            f"Unlike every reference (nearest similarity {_fmt(v.vote.similarity or 0.0)}): "
            f"it may show {names}, which has no reference photos yet."
        )
        out.append(Suggestion(v.image, v.kind, v.vote, None, "novel", 0.0, detail))
    return out


def merged(first: Sequence[Suggestion], rest: Sequence[Suggestion], top: int) -> list[Suggestion]:
    """`first`, then `rest` without the photos already in it, `top` in all."""
    seen = {s.image.id for s in first}
    return [*first, *(s for s in rest if s.image.id not in seen)][:top]


def unreferenced_of(
    standards: Mapping[str, Standard], references: Mapping[str, int]
) -> dict[str, list[str]]:
    """Kind -> the landmarks of its default standard's requirements that no reference photo
    can document (a requirement none of whose labels has a reference)."""
    out: dict[str, list[str]] = {}
    for standard in standards.values():
        if not standard.default_for_kind:
            continue
        for req in standard.requirements:
            if not any(references.get(lab) for lab in req.labels):
                out.setdefault(standard.procedure_kind, []).extend(req.labels)
    return out


def suggestions(
    docs: Documentation, session: Session, *, label: str | None = None, top: int = TOP
) -> list[Suggestion]:
    """The `top` photos whose label would help most (optionally: about one landmark)."""
    return rank(votes(docs, session), docs.policy(docs.model[0]), landmarks_of(docs), label)[:top]


def landmarks_of(docs: Documentation) -> frozenset[str]:
    """Every label a standard of the service asks for."""
    return frozenset(lab for s in docs.standards.values() for lab in s.labels)


@dataclass(frozen=True)
class Uncertain:
    """A photo whose vote for a landmark stayed below its threshold, and why."""

    image: Image
    vote: Prediction
    reason: Reason


def uncertain_of(
    docs: Documentation, session: Session, label: str, voted: Sequence[Voted] | None = None
) -> list[Uncertain]:
    """Photos voted `label` but not recognised, with the reason the checklist would give."""
    model_id, dim = docs.model
    policy = docs.policy(model_id)
    gallery = docs.gallery.get(session, model_id, dim)
    references = dict(gallery.counts) if gallery is not None else {}
    voted = votes(docs, session) if voted is None else voted
    return [
        Uncertain(
            v.image, v.vote, uncertain_reason(label, v.vote.score, policy, v.vote, references)
        )
        for v in voted
        if v.vote.label == label and v.vote.recognition != "recognised"
    ]
