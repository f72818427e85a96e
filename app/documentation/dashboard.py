"""Documentation quality over many procedures: completeness per standard and per requirement,
by period (week / month), room and operator code, with the procedures behind every rate.

Each procedure is judged by the code that writes its own checklist (report.documentation_report
fed by procedure_report's report_inputs, video_picks and ensure_predictions), so a procedure
counts as complete here exactly when its page says "Complete". Procedures are read in chunks
(3-4 queries per chunk, never one per procedure, plain columns rather than ORM objects) and
only counts are kept, so memory does not grow with the period.

Dates are UTC days; a procedure falls on the day it was performed (its creation when the
device gave no time). Periods are ISO weeks (Monday first) or calendar months.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from app.db.models import Image, Label, Procedure
from app.documentation.dashboard_stats import Rate
from app.documentation.predictions import needs_prediction
from app.documentation.procedure_report import ensure_predictions, report_inputs, video_picks
from app.documentation.report import DocumentationReport, ImageLabel, documentation_report
from app.documentation.schema import Requirement, Standard
from app.documentation.service import Documentation
from app.documentation.thresholds import Calibration
from app.services.errors import ProblemError

Period = Literal["week", "month"]
PERIODS: tuple[Period, ...] = ("week", "month")
DEFAULT_SPAN = {"week": 26, "month": 12}  # periods shown when no start date is given
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)  # no arithmetic overflow near them
MAX_PERIODS = 260  # five years of weeks: beyond that a plot is unreadable anyway
MAX_PROCEDURES = 50_000  # judged per request at most (5,000 with 40,000 photos: about 5 s)
CHUNK = 200  # procedures whose photos are read together
SYNTHETIC_SOURCE = "synthetic-demo"  # `endoseek demo` procedures (app.ui.queries.DEMO_SOURCE)


@dataclass(frozen=True)
class QualityFilter:
    """Which procedures count, and how they are grouped in time. Dates are inclusive UTC days."""

    standard_id: str | None = None
    period: Period = "month"
    date_from: date | None = None
    date_to: date | None = None
    room: str | None = None
    operator: str | None = None


def period_start(day: date, period: Period) -> date:
    """First day of the week (Monday) or month holding `day`."""
    return day - timedelta(days=day.weekday()) if period == "week" else day.replace(day=1)


def next_period(start: date, period: Period) -> date:
    if period == "week":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def period_label(start: date, period: Period) -> str:
    """'2026-W05' (ISO week) or '2026-01'."""
    if period == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start.year}-{start.month:02d}"


def period_starts(first: date, last: date, period: Period) -> list[date]:
    """Every period from the one holding `first` to the one holding `last`."""
    out, start = [], period_start(first, period)
    while start <= last:
        out.append(start)
        start = next_period(start, period)
    return out


def resolve(f: QualityFilter, today: date) -> QualityFilter:
    """Fill the default range (the last 26 weeks or 12 months up to today) and check it."""
    if f.period not in PERIODS:
        raise ProblemError(422, "invalid_period", f"period must be one of {', '.join(PERIODS)}.")
    for day in (f.date_from, f.date_to):
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise ProblemError(
                422, "invalid_date", f"Dates must lie between {FIRST_DAY} and {LAST_DAY}."
            )
    date_to = f.date_to or today
    date_from = f.date_from
    if date_from is None:
        start = period_start(date_to, f.period)
        for _ in range(DEFAULT_SPAN[f.period] - 1):
            start = period_start(start - timedelta(days=1), f.period)
        date_from = start
    if date_from > date_to:
        raise ProblemError(422, "invalid_range", "The start date is after the end date.")
    if len(period_starts(date_from, date_to, f.period)) > MAX_PERIODS:
        raise ProblemError(
            422, "range_too_long", f"At most {MAX_PERIODS} periods; shorten the range."
        )
    return replace(f, date_from=date_from, date_to=date_to)


def _day_of(when: datetime) -> date:
    """UTC day of a stored time (SQLite hands back naive UTC datetimes)."""
    return (when if when.tzinfo is None else when.astimezone(UTC)).date()


@dataclass
class _Tally:
    """Counts of one group; the report's statuses per requirement and reason codes."""

    n: int = 0
    complete: int = 0
    completeness: float = 0.0
    status: dict[str, Counter[str]] = field(default_factory=dict)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, report: DocumentationReport) -> None:
        self.n += 1
        self.complete += report.complete
        self.completeness += report.completeness
        for result in report.results:
            rid = result.requirement.id
            self.status.setdefault(rid, Counter())[result.status] += 1
            if result.reason is not None:
                self.reasons.setdefault(rid, Counter())[result.reason.code] += 1


@dataclass(frozen=True)
class RequirementRate:
    """How often one requirement was documented; uncertain + missing = not documented."""

    requirement: Requirement
    documented: Rate
    uncertain: int
    missing: int
    reasons: tuple[tuple[str, int], ...] = ()  # reason codes of the misses, most frequent first

    @property
    def not_documented(self) -> Rate:
        return Rate(self.uncertain + self.missing, self.documented.n)


@dataclass(frozen=True)
class GroupQuality:
    """One row of a table: all procedures, a period, a room or an operator code."""

    key: str  # '' for procedures without a room / operator code
    complete: Rate  # procedures with every required item documented
    mean_completeness: float | None  # mean share of required items documented
    requirements: tuple[RequirementRate, ...]
    start: date | None = None  # first day of a period row


def _group(standard: Standard, key: str, t: _Tally, start: date | None = None) -> GroupQuality:
    reqs = []
    for req in standard.requirements:
        counts = t.status.get(req.id, Counter())
        reasons = tuple(t.reasons.get(req.id, Counter()).most_common())
        reqs.append(
            RequirementRate(
                req,
                Rate(counts["documented"], t.n),
                counts["uncertain"],
                counts["missing"],
                reasons,
            )
        )
    mean = t.completeness / t.n if t.n else None
    return GroupQuality(key, Rate(t.complete, t.n), mean, tuple(reqs), start)


@dataclass(frozen=True)
class StandardQuality:
    """The dashboard of one standard."""

    standard: Standard
    overall: GroupQuality
    periods: tuple[GroupQuality, ...]
    rooms: tuple[GroupQuality, ...]
    operators: tuple[GroupQuality, ...]

    def most_missed(self, top: int = 5) -> list[RequirementRate]:
        """Requirements most often not documented (share of procedures), then standard order."""
        missed = [r for r in self.overall.requirements if r.not_documented.k]
        missed.sort(key=lambda r: -(r.not_documented.rate or 0.0))  # stable: standard order
        return missed[:top]


@dataclass(frozen=True)
class QualityDashboard:
    """Every standard's dashboard for one filter (resolved: dates are set)."""

    filter: QualityFilter
    model_id: str
    calibrated: bool
    standards: tuple[StandardQuality, ...]
    generated_at: datetime
    synthetic: int = 0  # procedures of `endoseek demo` among those counted: reports say so

    @property
    def procedures(self) -> int:
        return sum(s.overall.complete.n for s in self.standards)

    @property
    def period_labels(self) -> list[str]:
        assert self.filter.date_from is not None and self.filter.date_to is not None
        starts = period_starts(self.filter.date_from, self.filter.date_to, self.filter.period)
        return [period_label(s, self.filter.period) for s in starts]


def standards_of(docs: Documentation, standard_id: str | None) -> list[Standard]:
    """The named standard, or every kind's default standard (one dashboard each)."""
    if standard_id is not None:
        if standard_id not in docs.standards:
            raise ProblemError(404, "standard_not_found", f"No standard '{standard_id}'.")
        return [docs.standards[standard_id]]
    defaults = [s for s in docs.standards.values() if s.default_for_kind]
    return sorted(defaults, key=lambda s: s.procedure_kind)


def _procedure_ids(session: Session, f: QualityFilter, kinds: Sequence[str]) -> list[uuid.UUID]:
    assert f.date_from is not None and f.date_to is not None
    when = sa.func.coalesce(Procedure.performed_at, Procedure.created_at)
    start = datetime.combine(f.date_from, time.min, UTC)
    end = datetime.combine(f.date_to + timedelta(days=1), time.min, UTC)
    q = sa.select(Procedure.id).where(Procedure.kind.in_(list(kinds)), when >= start, when < end)
    if f.room is not None:
        q = q.where(Procedure.room == f.room)
    if f.operator is not None:
        q = q.where(Procedure.operator == f.operator)
    ids = list(session.scalars(q.order_by(when, Procedure.id).limit(MAX_PROCEDURES + 1)))
    if len(ids) > MAX_PROCEDURES:
        raise ProblemError(
            422,
            "too_many_procedures",
            f"More than {MAX_PROCEDURES} procedures match; shorten the range or pick a room.",
        )
    return ids


@dataclass(frozen=True)
class _Photo:
    """The columns of a live image its report reads. Loading ORM objects for every photo of
    a year took about 70 % of the dashboard's time (profiled at 16,000 photos)."""

    id: int
    procedure_id: uuid.UUID
    labels: list[ImageLabel] = field(default_factory=list)


def _photos(session: Session, procedure_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[_Photo]]:
    """Live photos with their labels per procedure, oldest first (the report's tie order)."""
    q = (
        sa.select(Image.id, Image.procedure_id, Label.label, Label.source, Label.score,
                  Label.model_id)
        .outerjoin(Label, Label.image_id == Image.id)
        .where(Image.procedure_id.in_(list(procedure_ids)), Image.deleted_at.is_(None))
        .order_by(Image.id, Label.id)
    )  # fmt: skip
    out: dict[uuid.UUID, list[_Photo]] = {pid: [] for pid in procedure_ids}
    last: _Photo | None = None
    for image_id, procedure_id, label, source, score, model_id in session.execute(q):
        if last is None or last.id != image_id:
            last = _Photo(image_id, procedure_id)
            out[procedure_id].append(last)
        if label is not None:
            last.labels.append(ImageLabel(label, source, score, model_id))
    return out


def _predict_missing(docs: Documentation, session: Session, photos: Sequence[_Photo]) -> bool:
    """Predict the photos that lack a prediction of the serving model (stored before its
    gallery or a re-index), as every report does first; True when some were asked for."""
    model_id, dim = docs.model
    todo = [p.id for p in photos if needs_prediction(p, model_id)]  # type: ignore[arg-type]
    if not todo or docs.predictor(session, model_id, dim) is None:
        return False
    for start in range(0, len(todo), 500):
        ids = todo[start : start + 500]
        q = sa.select(Image).where(Image.id.in_(ids)).options(selectinload(Image.labels))
        images = list(session.scalars(q))
        owners = {img.procedure_id for img in images}  # in the session: no lazy load per photo
        list(session.scalars(sa.select(Procedure).where(Procedure.id.in_(owners))))
        ensure_predictions(docs, session, images)
    return True


_PROCEDURE_COLUMNS = (
    Procedure.id,
    Procedure.kind,
    Procedure.source,
    Procedure.performed_at,
    Procedure.created_at,
    Procedure.room,
    Procedure.operator,
)


def _judged(
    docs: Documentation,
    session: Session,
    ids: list[uuid.UUID],
    by_kind: dict[str, Standard],
    references: dict[str, int],
) -> Iterator[tuple[sa.Row, DocumentationReport]]:
    """Each procedure's report, read CHUNK procedures at a time (3-4 queries per chunk)."""
    model_id, _ = docs.model
    policy = docs.policy(model_id)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        procs = session.execute(sa.select(*_PROCEDURE_COLUMNS).where(Procedure.id.in_(chunk)))
        photos = _photos(session, chunk)
        flat = [p for group in photos.values() for p in group]
        if _predict_missing(docs, session, flat):
            photos = _photos(session, chunk)  # with the predictions just stored
            flat = [p for group in photos.values() for p in group]
        picks = video_picks(session, [p.id for p in flat])
        for proc in procs.all():
            inputs = report_inputs(photos[proc.id], picks)  # type: ignore[arg-type]
            standard = by_kind[proc.kind]
            yield proc, documentation_report(standard, inputs, policy, references=references)
        session.expunge_all()  # only counts are kept: let the chunk's rows go


def quality_dashboard(
    docs: Documentation, session: Session, f: QualityFilter, today: date | None = None
) -> QualityDashboard:
    """Judge every matching procedure once and count it into its period, room and operator."""
    f = resolve(f, today or datetime.now(UTC).date())
    assert f.date_from is not None and f.date_to is not None
    standards = standards_of(docs, f.standard_id)
    by_kind = {s.procedure_kind: s for s in standards}
    model_id, dim = docs.model
    gallery = docs.gallery.get(session, model_id, dim)
    references = dict(gallery.counts) if gallery is not None else {}
    starts = period_starts(f.date_from, f.date_to, f.period)
    tallies: dict[str, dict[str, dict]] = {
        s.id: {"all": {"": _Tally()}, "period": {d: _Tally() for d in starts}, "room": {}, "op": {}}
        for s in standards
    }
    ids = _procedure_ids(session, f, list(by_kind))
    synthetic = 0
    for proc, report in _judged(docs, session, ids, by_kind, references):
        synthetic += proc.source == SYNTHETIC_SOURCE
        t = tallies[report.standard.id]
        day = _day_of(proc.performed_at or proc.created_at)
        t["all"][""].add(report)
        t["period"][period_start(day, f.period)].add(report)
        t["room"].setdefault(proc.room or "", _Tally()).add(report)
        t["op"].setdefault(proc.operator or "", _Tally()).add(report)
    out = []
    for s in standards:
        t = tallies[s.id]
        out.append(
            StandardQuality(
                s,
                _group(s, "all", t["all"][""]),
                tuple(_group(s, period_label(d, f.period), t["period"][d], d) for d in starts),
                _codes(s, t["room"]),
                _codes(s, t["op"]),
            )
        )
    calibrated = isinstance(docs.policy(model_id), Calibration)
    return QualityDashboard(f, model_id, calibrated, tuple(out), datetime.now(UTC), synthetic)


def _codes(standard: Standard, tallies: dict[str, _Tally]) -> tuple[GroupQuality, ...]:
    """Rows by code, codes in order and procedures without one last."""
    keys = sorted(tallies, key=lambda code: (code == "", code))
    return tuple(_group(standard, code, tallies[code]) for code in keys)


def code_options(session: Session, limit: int = 500) -> tuple[list[str], list[str]]:
    """The room and operator codes in use, for the dashboard's filter choices."""

    def distinct(column: InstrumentedAttribute[str | None]) -> list[str]:
        q = sa.select(column).where(column.is_not(None)).distinct().order_by(column).limit(limit)
        return list(session.scalars(q))

    return distinct(Procedure.room), distinct(Procedure.operator)
