"""Reports of stored procedures: one procedure against a standard, and a completeness listing.

Reports read the active model's predictions; photos without one (stored before a re-index
flip, or before the first reference photo) are predicted from their stored vectors first,
so the reports follow the serving model and its reference gallery.

Stored predictions are voted within the procedure's reach at ingest (the kind is known there
and never changes), so listings read them as they are. The report of one procedure also
re-votes its photos from their stored vectors, which only explains (runner-up, nearest
similarity, out-of-reach whole-gallery winner) and never changes a status.

Stills picked from a procedure video carry their picks (video_images) into every report, so
they count only once QA accepted them (app.documentation.report).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from app.db.models import Image, Procedure, VideoImage
from app.documentation.predict import Prediction
from app.documentation.predictions import fill_predictions
from app.documentation.quality import file_quality
from app.documentation.report import (
    DocumentationReport,
    ImageLabel,
    ProcedureImage,
    VideoPick,
    documentation_report,
)
from app.documentation.schema import Standard
from app.documentation.service import Documentation
from app.documentation.thresholds import Calibration
from app.services import pagination, vectors
from app.services.errors import ProblemError
from app.services.runtime import Runtime

SCAN_BATCH = 100
SCAN_MAX = 1_000  # procedures judged per listing request at most (then a cursor to go on)


@dataclass(frozen=True)
class ProcedureDocumentation:
    """A procedure's report and its photos by report id (the image id unless a key was given),
    and the photos whose whole-gallery best match is a landmark the procedure cannot show."""

    procedure: Procedure
    report: DocumentationReport
    images: dict[Hashable, Image]
    model_id: str
    calibrated: bool
    unexpected: list[tuple[Image, Prediction]] = field(default_factory=list)


@dataclass(frozen=True)
class ListingFilter:
    """Which procedures the completeness listing considers."""

    kind: str | None = None
    standard_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    complete: bool | None = None


def _live_images(session: Session, procedure_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list]:
    """Live images with labels per procedure, oldest first (the report's tie order)."""
    out: dict[uuid.UUID, list[Image]] = {pid: [] for pid in procedure_ids}
    q = (
        sa.select(Image)
        .where(Image.procedure_id.in_(list(procedure_ids)), Image.deleted_at.is_(None))
        .options(selectinload(Image.labels))
        .order_by(Image.id)
    )
    for img in session.scalars(q):
        out[img.procedure_id].append(img)
    return out


def video_picks(session: Session, image_ids: Sequence[int]) -> dict[int, list[VideoPick]]:
    """Image id -> its picks, for the images that are stills picked from a video."""
    out: dict[int, list[VideoPick]] = {}
    ids = list(image_ids)
    for start in range(0, len(ids), 1000):
        rows = session.scalars(
            sa.select(VideoImage)
            .where(VideoImage.image_id.in_(ids[start : start + 1000]))
            .order_by(VideoImage.id)
        )
        for row in rows:
            out.setdefault(row.image_id, []).append(
                VideoPick(
                    row.label,
                    row.review,  # type: ignore[arg-type]
                    row.t_ms,
                    row.score,
                    row.video_id,
                    row.requirement,
                )
            )
    return out


def report_inputs(
    images: Sequence[Image],
    picks: Mapping[int, Sequence[VideoPick]],
    key: Callable[[Image], Hashable] = lambda img: img.id,
    votes: Mapping[int, Prediction] | None = None,
) -> list[ProcedureImage]:
    """DB rows -> the report's inputs (labels, the fresh vote, a video still's picks)."""
    return [
        ProcedureImage(
            key(img),
            [ImageLabel(lab.label, lab.source, lab.score, lab.model_id) for lab in img.labels],  # type: ignore[arg-type]
            (votes or {}).get(img.id),
            tuple(picks.get(img.id, ())),
        )
        for img in images
    ]


def ensure_predictions(docs: Documentation, session: Session, images: list[Image]) -> None:
    """Predict (and store) the serving model's landmark of photos that have none yet, each
    within the reach of its procedure's kind."""
    model_id, dim = docs.model
    predictor = docs.predictor(session, model_id, dim)
    if predictor is None:
        return
    by_procedure: dict[uuid.UUID, list[Image]] = {}
    for img in images:
        by_procedure.setdefault(img.procedure_id, []).append(img)
    added = 0
    for group in by_procedure.values():
        reach = docs.reach(group[0].procedure.kind)
        added += fill_predictions(session, predictor, group, model_id, dim, reach)
    if added:
        session.commit()
        for img in images:  # sessions keep objects on commit: reload labels with the new rows
            session.expire(img, ["labels"])


def fresh_votes(
    docs: Documentation, session: Session, kind: str, images: list[Image]
) -> dict[int, Prediction]:
    """Image id -> this moment's vote within the reach of `kind` (from the stored vectors)."""
    model_id, dim = docs.model
    predictor = docs.predictor(session, model_id, dim)
    if predictor is None or not images:
        return {}
    reach = docs.reach(kind)
    out: dict[int, Prediction] = {}
    for ids, vecs in vectors.vectors_for(session, model_id, dim, np.array([i.id for i in images])):
        for image_id, vote in zip(ids.tolist(), predictor.predict(vecs, reach), strict=True):
            out[int(image_id)] = vote
    return out


def _quality(docs: Documentation, by_key: dict[Hashable, Image]) -> Callable[[Hashable], float]:
    """Image quality of the stored thumbnail (asked only to break ties between photos)."""
    from app.services.images import thumbnail_path

    def quality(key: Hashable) -> float:
        try:
            return file_quality(thumbnail_path(docs.rt, by_key[key], None))
        except (ProblemError, OSError):
            return 0.0

    return quality


def judge(
    docs: Documentation,
    session: Session | None,
    procedure: Procedure,
    standard: Standard,
    images: list[Image],
    key: Callable[[Image], Hashable] = lambda img: img.id,
    picks: Mapping[int, Sequence[VideoPick]] | None = None,
) -> ProcedureDocumentation:
    """The report of `images`; with a `session` it is explained (fresh votes, references,
    unexpected photos, ties broken by quality), without one it is the listing's quick verdict.
    `picks` (video stills) are read with the session when not given; without a session they
    must be given."""
    model_id, _ = docs.model
    policy = docs.policy(model_id)
    votes = fresh_votes(docs, session, procedure.kind, images) if session is not None else {}
    if picks is None:
        if session is None:
            raise ValueError("judge without a session needs the images' video picks")
        picks = video_picks(session, [img.id for img in images])
    inputs = report_inputs(images, picks, key, votes)
    by_key = {key(img): img for img in images}
    references = None
    if session is not None:
        gallery = docs.gallery.get(session, model_id, docs.model[1])
        references = dict(gallery.counts) if gallery is not None else {}
    report = documentation_report(
        standard,
        inputs,
        policy,
        quality=_quality(docs, by_key) if session is not None else None,
        references=references,
    )
    unexpected = [
        (img, votes[img.id]) for img in images if img.id in votes and votes[img.id].unexpected
    ]
    calibrated = isinstance(policy, Calibration)
    return ProcedureDocumentation(procedure, report, by_key, model_id, calibrated, unexpected)


def procedure_documentation(
    docs: Documentation,
    session: Session,
    procedure: Procedure,
    standard_id: str | None,
    key: Callable[[Image], Hashable] = lambda img: img.id,
) -> ProcedureDocumentation:
    """One procedure against the named standard (default: its kind's default standard),
    explained; `key` names the images in the report (the UI uses their uid)."""
    standard = docs.standard(procedure.kind, standard_id)
    images = _live_images(session, [procedure.id])[procedure.id]
    ensure_predictions(docs, session, images)
    return judge(docs, session, procedure, standard, images, key)


def _candidates(docs: Documentation, f: ListingFilter) -> tuple[sa.Select, Standard | None]:
    standard = None
    kinds = sorted({s.procedure_kind for s in docs.standards.values() if s.default_for_kind})
    if f.standard_id is not None:
        if f.standard_id not in docs.standards:
            raise ProblemError(404, "standard_not_found", f"No standard '{f.standard_id}'.")
        standard = docs.standards[f.standard_id]
        kinds = [standard.procedure_kind]
    if f.kind is not None:
        kinds = [k for k in kinds if k == f.kind]
    when = sa.func.coalesce(Procedure.performed_at, Procedure.created_at)
    q = sa.select(Procedure).where(Procedure.kind.in_(kinds))
    if f.since is not None:
        q = q.where(when >= f.since)
    if f.until is not None:
        q = q.where(when < f.until)
    return q.order_by(Procedure.created_at.desc(), Procedure.id.desc()), standard


def _after(q: sa.Select, cursor: str | None) -> sa.Select:
    if not cursor:
        return q
    ts, rid = pagination.decode(cursor)
    return q.where(
        sa.or_(Procedure.created_at < ts, sa.and_(Procedure.created_at == ts, Procedure.id < rid))
    )


def documentation_page(
    docs: Documentation, session: Session, f: ListingFilter, limit: int, cursor: str | None
) -> tuple[list[ProcedureDocumentation], str | None]:
    """Newest procedures first whose completeness matches; judges at most SCAN_MAX per call.

    `next_cursor` is None only when no procedure is left to judge; a page may hold fewer
    than `limit` items (even none) when the scan budget ran out first.
    """
    base, standard = _candidates(docs, f)
    items: list[ProcedureDocumentation] = []
    scanned, last = 0, None
    while len(items) < limit and scanned < SCAN_MAX:
        batch = list(session.scalars(_after(base, cursor).limit(SCAN_BATCH)))
        if not batch:
            return items, None
        images = _live_images(session, [p.id for p in batch])
        picks = video_picks(session, [img.id for group in images.values() for img in group])
        for proc in batch:
            scanned += 1
            last = proc
            cursor = pagination.encode(proc.created_at, proc.id)
            chosen = standard or docs.standards.default_for(proc.kind)
            if chosen is None:
                continue
            ensure_predictions(docs, session, images[proc.id])
            judged = judge(docs, None, proc, chosen, images[proc.id], picks=picks)
            if f.complete is None or judged.report.complete == f.complete:
                items.append(judged)
            if len(items) >= limit or scanned >= SCAN_MAX:
                break
    more = last is not None and session.scalar(sa.select(_after(base, cursor).exists()))
    return items, cursor if more else None


def explained_report(
    rt: Runtime, session: Session, procedure: Procedure, standard_id: str
) -> ProcedureDocumentation:
    """The UI's explained report of one procedure (images named by uid, as its pages do)."""
    from app.documentation.service import documentation_of

    return procedure_documentation(
        documentation_of(rt), session, procedure, standard_id, key=lambda img: str(img.uid)
    )
