"""GET /v1/quality/*: the dashboard as JSON, CSV, PDF and PNG on the real app (SYNTHETIC data).

The last test runs the whole chain with real photos: uploaded before any reference photo
existed, predicted once the gallery and thresholds are in, and counted as their own reports say.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image as PILImage

from app.db.models import AuditEvent
from tests.app.documentation.service_support import (
    Photos,
    Service,
    add_gallery,
    calibrate,
    running_service,
)
from tests.app.documentation.test_dashboard import seed_archive

RANGE = {"date_from": "2026-01-01", "date_to": "2026-03-31"}


@pytest.fixture
def svc_archive(tmp_path: Path, sqlite_url: str):  # type: ignore[no-untyped-def]
    with running_service(tmp_path, sqlite_url) as svc:
        seed_archive(svc)
        yield svc


def _get(svc: Service, path: str, scope: str = "search", **params: str):  # noqa: ANN202
    return svc.client.get(path, params={**RANGE, **params}, headers=svc.headers[scope])


def test_summary_has_rates_n_and_intervals(svc_archive: Service) -> None:
    r = _get(svc_archive, "/v1/quality/summary")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filter"] == {"standard": None, "period": "month", "room": None,
                              "operator": None, **RANGE}  # fmt: skip
    assert body["procedures"] == 8 and body["synthetic"] == 0 and body["calibrated"] is False
    colon = body["standards"][0]
    assert colon["standard"]["id"] == "landmarks-colonoscopy"
    overall = colon["overall"]["complete"]
    assert (overall["k"], overall["n"], overall["rate"]) == (3, 7, pytest.approx(3 / 7))
    assert 0 < overall["ci_low"] < 3 / 7 < overall["ci_high"] < 1
    assert [(g["key"], g["complete"]["n"]) for g in colon["rooms"]] == [
        ("endo-a", 4),
        ("endo-b", 2),
        (None, 1),  # no room code
    ]
    assert [g["start"] for g in colon["periods"]] == ["2026-01-01", "2026-02-01", "2026-03-01"]
    ileum = next(x for x in colon["overall"]["requirements"] if x["id"] == "ileum")
    assert ileum["documented"]["k"] == 5 and ileum["uncertain"] == 1 and ileum["missing"] == 1
    assert colon["most_missed"] == ["retroflex-rectum", "ileum", "cecum"]
    empty = _get(svc_archive, "/v1/quality/summary", date_from="2026-02-01", date_to="2026-02-28")
    upper = empty.json()["standards"][1]["overall"]["complete"]
    assert upper == {"k": 0, "n": 0, "rate": None, "ci_low": None, "ci_high": None}
    with svc_archive.rt.sessions() as s:
        actions = s.scalars(sa.select(AuditEvent.action)).all()
    assert actions.count("quality.summary") == 2


def test_filters_and_refusals(svc_archive: Service) -> None:
    r = _get(svc_archive, "/v1/quality/summary", room="endo-b", period="week")
    assert r.status_code == 200
    colon = r.json()["standards"][0]
    assert colon["overall"]["complete"]["n"] == 2 and colon["periods"][0]["key"] == "2026-W01"
    assert _get(svc_archive, "/v1/quality/summary", scope="ingest").status_code == 403
    assert svc_archive.client.get("/v1/quality/summary").status_code == 401
    for params, status, code in [
        ({"period": "year"}, 422, None),
        ({"room": "Dr Jane Smith"}, 422, None),  # codes only: never a name
        ({"standard": "nope"}, 404, "standard_not_found"),
        ({"date_from": "2026-04-01"}, 422, "invalid_range"),
    ]:
        r = _get(svc_archive, "/v1/quality/summary", **params)
        assert r.status_code == status, (params, r.text)
        if code:
            assert r.json()["code"] == code


def test_csv_export_is_one_rate_per_row(svc_archive: Service) -> None:
    r = _get(svc_archive, "/v1/quality/summary.csv", standard="landmarks-colonoscopy")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    name = "endoseek-quality-landmarks-colonoscopy-2026-01-01-2026-03-31-month.csv"
    assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["standard_id"] for row in rows} == {"landmarks-colonoscopy"}
    (overall,) = [x for x in rows if x["group_by"] == "all" and x["measure"] == "complete"]
    assert (overall["k"], overall["n"], overall["rate"]) == ("3", "7", "0.4286")
    assert float(overall["ci_low"]) < 0.4286 < float(overall["ci_high"])
    rooms = [
        (x["group"], x["n"]) for x in rows if x["group_by"] == "room" and x["measure"] == "complete"
    ]
    assert rooms == [("endo-a", "4"), ("endo-b", "2"), ("(none)", "1")]
    rr = [
        x for x in rows if x["group_by"] == "period" and x["requirement_id"] == "retroflex-rectum"
    ]
    assert [(x["period_start"], x["k"], x["n"], x["missing"]) for x in rr] == [
        ("2026-01-01", "1", "3", "2"),
        ("2026-02-01", "1", "2", "1"),
        ("2026-03-01", "1", "2", "1"),
    ]
    # 1 overall + 3 months + 3 rooms + 3 operators, each: complete + 3 requirements
    assert len(rows) == 10 * 4


def _pdf_text(pdf: bytes) -> str:
    """The strings matplotlib's PDF pages show (TJ arrays of its compressed page streams)."""
    out = []
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        if stream[:1] != b"x":  # zlib header: a page's content (fonts are not shown text)
            continue
        for array in re.findall(rb"\[(.*?)\]\s*TJ", zlib.decompress(stream), re.S):
            out.append(b"".join(re.findall(rb"\(((?:\\.|[^\\)])*)\)", array)))
    return b"\n".join(out).decode("latin-1")


def test_pdf_report_and_png_plot(svc_archive: Service) -> None:
    r = _get(svc_archive, "/v1/quality/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pdf = r.content
    assert pdf.startswith(b"%PDF-") and b"Photo-documentation quality" in pdf  # the title
    # an A4 landscape plot page, then the tables of both standards flowed onto A4 portrait
    assert re.findall(rb"/MediaBox \[ ?0 0 ([\d.]+) ([\d.]+) ?\]", pdf) == [
        (b"841.68", b"595.44"),
        (b"595.44", b"841.68"),
    ]
    text = _pdf_text(pdf)
    for words in ("Terminal ileum", r"43 % \(16", "per operator", "endo-b", r"\(none\)"):
        assert words in text, words
    r = _get(svc_archive, "/v1/quality/plot.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    png = PILImage.open(io.BytesIO(r.content))
    assert png.format == "PNG" and png.width >= 2000  # print quality for a report
    assert _get(svc_archive, "/v1/quality/plot.png", scope="label").status_code == 403


def test_photos_stored_before_the_gallery_are_counted_as_their_reports_say(
    tmp_path: Path, sqlite_url: str, photos: Photos
) -> None:
    with running_service(tmp_path, sqlite_url) as svc:
        complete = svc.procedure("early-complete", room="endo-c", operator="op-z")
        partial = svc.procedure("early-partial", room="endo-c", operator="op-z")
        svc.upload(complete, [photos.procedure_photo(lab) for lab in
                              ("cecum", "ileum", "retroflex-rectum")])  # fmt: skip
        svc.upload(partial, [photos.procedure_photo("ileum")])
        add_gallery(svc, photos)  # the reference photos arrive afterwards
        calibrate(svc, photos, svc.rt.embedder)
        r = svc.client.get("/v1/quality/summary", params={"room": "endo-c"},
                           headers=svc.headers["search"])  # fmt: skip
        assert r.status_code == 200, r.text
        colon = r.json()["standards"][0]
        reports = [svc.documentation(pid) for pid in (complete, partial)]
    assert colon["overall"]["complete"]["n"] == 2
    assert colon["overall"]["complete"]["k"] == sum(doc["complete"] for doc in reports) == 1
    documented = {x["id"]: x["documented"]["k"] for x in colon["overall"]["requirements"]}
    assert documented == {
        rid: sum(any(r["id"] == rid and r["status"] == "documented" for r in doc["requirements"])
                 for doc in reports)
        for rid in ("cecum", "ileum", "retroflex-rectum")
    }  # fmt: skip
    assert documented["ileum"] == 2
