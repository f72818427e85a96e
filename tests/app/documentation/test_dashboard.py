"""The quality dashboard over a SYNTHETIC archive: rates, N, groups, filters, the same verdicts
as each procedure's own report, and DB work that does not grow with the procedures.

Procedures, photos and labels are written straight into a real (SQLite) database of a running
service: manual labels document, a prediction of the active model stays uncertain (the
service is not calibrated), a deleted photo counts for nothing. None of it is patient data.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.db.models import Image, Label, Procedure, Video, VideoImage
from app.documentation.dashboard import (
    QualityFilter,
    code_options,
    period_label,
    period_starts,
    quality_dashboard,
    resolve,
)
from app.documentation.service import documentation_of
from app.services.errors import ProblemError
from tests.app.documentation.service_support import Service, running_service

SOURCE = "synthetic-dashboard-test"
RANGE = {"date_from": date(2026, 1, 1), "date_to": date(2026, 3, 31)}
ALL = ("cecum", "ileum", "retroflex-rectum")


@dataclass(frozen=True)
class Seed:
    """One SYNTHETIC procedure: its day, codes, photos with manual labels, and photos with an
    (uncertain) prediction of the active model; `deleted` photos are labelled, then deleted."""

    name: str
    day: date | None
    room: str | None = None
    operator: str | None = None
    manual: tuple[str, ...] = ()
    predicted: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    kind: str = "colonoscopy"
    created: date | None = None


ARCHIVE = (
    Seed("p1", date(2026, 1, 10), "endo-a", "op-x", ALL),
    Seed("p2", date(2026, 1, 20), "endo-a", "op-y", ("cecum", "ileum")),
    Seed("p3", date(2026, 1, 31), "endo-b", "op-x", ("cecum",), predicted=("ileum",)),
    Seed("p4", date(2026, 2, 1), "endo-b", "op-y", ALL),
    Seed("p5", None, created=date(2026, 2, 15)),  # no time from the device: created counts
    Seed("p6", date(2026, 3, 3), "endo-a", "op-x", ALL),
    Seed("p7", date(2026, 3, 31), "endo-a", "op-x", ALL[:2], deleted=("retroflex-rectum",)),
    Seed("u1", date(2026, 3, 5), "endo-a", "op-x", ("z-line",), kind="upper_gi"),
    Seed("early", date(2025, 12, 31), "endo-a", "op-x", ALL),  # outside RANGE
    Seed("late", date(2026, 4, 1), "endo-a", "op-x", ALL),  # outside RANGE
)  # fmt: skip


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 30, tzinfo=UTC)


def _photo(session: sa.orm.Session, proc: Procedure, tag: str) -> Image:
    sha = hashlib.sha256(f"{proc.external_id}/{tag}/{uuid.uuid4()}".encode()).hexdigest()
    img = Image(procedure_id=proc.id, sha256=sha, storage_key=f"synthetic/{sha}",
                mime="image/jpeg", width=8, height=8, bytes=1)  # fmt: skip
    session.add(img)
    session.flush()
    return img


def seed_archive(svc: Service, seeds: tuple[Seed, ...] = ARCHIVE) -> dict[str, uuid.UUID]:
    """Write the SYNTHETIC procedures; returns their ids by name."""
    model_id = svc.rt.index.model_id
    out = {}
    with svc.rt.sessions() as s:
        for seed in seeds:
            proc = Procedure(source=SOURCE, external_id=seed.name, kind=seed.kind,
                             performed_at=_at(seed.day) if seed.day else None,
                             room=seed.room, operator=seed.operator)  # fmt: skip
            if seed.created:
                proc.created_at = _at(seed.created)
            s.add(proc)
            s.flush()
            for label in seed.manual + seed.deleted:
                img = _photo(s, proc, label)
                s.add(Label(image_id=img.id, label=label, source="manual"))
                if label in seed.deleted:
                    img.deleted_at = datetime.now(UTC)
            for label in seed.predicted:
                img = _photo(s, proc, label)
                s.add(Label(image_id=img.id, label=label, source="predicted", score=0.5,
                            model_id=model_id))  # fmt: skip
            out[seed.name] = proc.id
        s.commit()
    return out


@pytest.fixture
def archive(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Service, dict[str, uuid.UUID]]]:
    with running_service(tmp_path, sqlite_url) as svc:
        yield svc, seed_archive(svc)


def _dash(svc: Service, **kw: object):  # noqa: ANN202
    f = QualityFilter(**{**RANGE, **kw})  # type: ignore[arg-type]
    with svc.rt.sessions() as s:
        return quality_dashboard(documentation_of(svc.rt), s, f)


def _by(groups, attr: str = "key") -> dict:  # noqa: ANN001
    return {getattr(g, attr): (g.complete.k, g.complete.n) for g in groups}


def test_rates_n_and_groups_of_the_synthetic_archive(archive) -> None:
    svc, _ = archive
    dash = _dash(svc)
    assert [sq.standard.id for sq in dash.standards] == ["landmarks-colonoscopy",
                                                          "landmarks-upper-gi"]  # fmt: skip
    colon, upper = dash.standards
    assert (colon.overall.complete.k, colon.overall.complete.n) == (3, 7)
    assert colon.overall.mean_completeness == pytest.approx(
        (1 + 2 / 3 + 1 / 3 + 1 + 0 + 1 + 2 / 3) / 7
    )
    low, high = colon.overall.complete.ci
    assert low < 3 / 7 < high
    assert _by(colon.periods) == {"2026-01": (1, 3), "2026-02": (1, 2), "2026-03": (1, 2)}
    assert [g.start for g in colon.periods] == [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    assert list(_by(colon.rooms).items()) == [("endo-a", (2, 4)), ("endo-b", (1, 2)), ("", (0, 1))]
    assert list(_by(colon.operators).items()) == [("op-x", (2, 4)), ("op-y", (1, 2)), ("", (0, 1))]
    reqs = {r.requirement.id: r for r in colon.overall.requirements}
    assert {k: (r.documented.k, r.uncertain, r.missing) for k, r in reqs.items()} == {
        "cecum": (6, 0, 1),
        "ileum": (5, 1, 1),  # p3's prediction is uncertain: the service is not calibrated
        "retroflex-rectum": (3, 0, 4),  # p7's deleted photo does not count
    }
    assert all(r.documented.n == 7 for r in reqs.values())
    assert dict(reqs["ileum"].reasons) == {"not_calibrated": 1, "no_references": 1}
    assert [r.requirement.id for r in colon.most_missed()] == ["retroflex-rectum", "ileum", "cecum"]
    assert (upper.overall.complete.k, upper.overall.complete.n) == (0, 1)
    assert dash.procedures == 8 and dash.synthetic == 0 and not dash.calibrated


def test_filters_room_operator_standard_and_range(archive) -> None:
    svc, _ = archive
    colon = _dash(svc, room="endo-a").standards[0]
    assert (colon.overall.complete.k, colon.overall.complete.n) == (2, 4)
    assert [g.key for g in colon.rooms] == ["endo-a"]
    colon = _dash(svc, operator="op-y").standards[0]
    assert (colon.overall.complete.k, colon.overall.complete.n) == (1, 2)
    dash = _dash(svc, date_from=date(2026, 2, 1), date_to=date(2026, 2, 28))
    assert _by(dash.standards[0].periods) == {"2026-02": (1, 2)}
    assert dash.standards[1].overall.complete.n == 0  # an empty group has no rate
    assert dash.standards[1].overall.complete.rate is None
    (esge,) = _dash(svc, standard_id="esge-colonoscopy-9").standards
    assert esge.standard.id == "esge-colonoscopy-9" and esge.overall.complete.n == 7
    assert _dash(svc, date_to=date(2026, 4, 1)).standards[0].overall.complete.n == 8  # "late"


def test_weeks_are_iso_weeks_with_every_week_shown(archive) -> None:
    svc, _ = archive
    colon = _dash(svc, period="week").standards[0]
    keys = [g.key for g in colon.periods]
    assert keys[0] == "2026-W01" and keys[-1] == "2026-W14" and len(keys) == 14
    assert colon.periods[0].start == date(2025, 12, 29)  # the Monday of 1 January's week
    counts = {g.key: g.complete.n for g in colon.periods if g.complete.n}
    assert counts == {"2026-W02": 1, "2026-W04": 1, "2026-W05": 2, "2026-W07": 1, "2026-W10": 1,
                      "2026-W14": 1}  # fmt: skip
    assert sum(g.complete.n for g in colon.periods) == 7


def test_each_procedure_counts_as_its_own_report_says(archive) -> None:
    svc, ids = archive
    colon = _dash(svc).standards[0]
    complete, documented = 0, dict.fromkeys(ALL, 0)
    for name in ("p1", "p2", "p3", "p4", "p5", "p6", "p7"):
        doc = svc.documentation(str(ids[name]))
        complete += doc["complete"]
        for r in doc["requirements"]:
            documented[r["id"]] += r["status"] == "documented"
    assert complete == colon.overall.complete.k
    assert documented == {r.requirement.id: r.documented.k for r in colon.overall.requirements}


def test_db_work_does_not_grow_with_the_procedures(archive) -> None:
    svc, _ = archive
    engine = svc.rt.sessions.kw["bind"]
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        statements.append(statement)

    _dash(svc)  # the reference gallery is read once and then cached
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        _dash(svc)
        few = len(statements)
        assert few <= 8, statements
        more = tuple(Seed(f"x{i}", date(2026, 2, 1 + i % 20), f"room-{i % 3}", None, ALL)
                     for i in range(60))  # fmt: skip
        seed_archive(svc, more)
        statements.clear()
        colon = _dash(svc).standards[0]
        assert colon.overall.complete.n == 67
        assert len(statements) == few, statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_bad_filters_are_problems(archive) -> None:
    svc, _ = archive
    with pytest.raises(ProblemError) as err:
        _dash(svc, standard_id="no-such-standard")
    assert err.value.status == 404
    with pytest.raises(ProblemError) as err:
        _dash(svc, date_from=date(2026, 3, 1), date_to=date(2026, 2, 1))
    assert err.value.code == "invalid_range"
    with pytest.raises(ProblemError) as err:
        _dash(svc, period="week", date_from=date(2000, 1, 1))
    assert err.value.code == "range_too_long"
    for edge in (date.min, date.max):  # no overflow at the calendar's ends
        with pytest.raises(ProblemError) as err:
            _dash(svc, date_from=edge, date_to=edge)
        assert err.value.code == "invalid_date"


def test_default_range_is_the_last_12_months_or_26_weeks() -> None:
    f = resolve(QualityFilter(), today=date(2026, 3, 18))
    assert (f.date_from, f.date_to) == (date(2025, 4, 1), date(2026, 3, 18))
    f = resolve(QualityFilter(period="week"), today=date(2026, 3, 18))  # a Wednesday
    assert f.date_from == date(2025, 9, 22) and f.date_from.weekday() == 0
    assert len(period_starts(f.date_from, f.date_to, "week")) == 26
    assert period_label(date(2026, 12, 1), "month") == "2026-12"
    months = period_starts(date(2025, 12, 5), date(2026, 1, 2), "month")
    assert months == [date(2025, 12, 1), date(2026, 1, 1)]


def test_code_options_list_the_codes_in_use(archive) -> None:
    svc, _ = archive
    with svc.rt.sessions() as s:
        assert code_options(s) == (["endo-a", "endo-b"], ["op-x", "op-y"])


def test_demo_source_is_the_ui_one() -> None:
    from app.documentation.dashboard import SYNTHETIC_SOURCE
    from app.ui.queries import DEMO_SOURCE

    assert SYNTHETIC_SOURCE == DEMO_SOURCE


def test_a_video_still_counts_only_once_accepted(archive) -> None:
    """A still picked from a video documents nothing until QA accepts its pick, whatever its
    labels say (the rule of the procedure's own checklist)."""
    svc, _ = archive
    day = date(2026, 5, 4)
    (pid,) = seed_archive(svc, (Seed("v1", day, "endo-v", None, ("cecum", "ileum")),)).values()
    with svc.rt.sessions() as s:
        proc = s.get(Procedure, pid)
        still = _photo(s, proc, "still")
        s.add(Label(image_id=still.id, label="retroflex-rectum", source="manual"))
        video = Video(procedure_id=pid, sha256="cd" * 32, container="mp4", codec="h264",
                      width=8, height=8, fps=10.0, duration_s=1.0, bytes=1)  # fmt: skip
        s.add(video)
        s.flush()
        pick = VideoImage(image_id=still.id, video_id=video.id, requirement="retroflex-rectum",
                          label="retroflex-rectum", t_ms=500, score=0.9, quality=0.8,
                          rank=1)  # fmt: skip
        s.add(pick)
        s.commit()
        pick_id = pick.id

    def rectum() -> tuple[int, int]:
        colon = _dash(svc, date_from=day, date_to=day, room="endo-v").standards[0]
        (r,) = [r for r in colon.overall.requirements if r.requirement.id == "retroflex-rectum"]
        return r.documented.k, colon.overall.complete.k

    assert rectum() == (0, 0)  # needs review: no evidence
    with svc.rt.sessions() as s:
        s.get(VideoImage, pick_id).review = "accepted"
        s.commit()
    assert rectum() == (1, 1)
