"""The quality dashboard page and its downloads on the real app (TestClient, SQLite), over the
SYNTHETIC archive of tests/app/documentation/test_dashboard.py (browser runs: Playwright)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PIL import Image as PILImage

from app.ui.setup import CSP
from tests.app.documentation.service_support import Service, running_service
from tests.app.documentation.test_dashboard import seed_archive

RANGE = "date_from=2026-01-01&date_to=2026-03-31"


@dataclass
class Env:
    svc: Service
    viewer: str  # search scope
    ingest: str  # ingest scope only


def _key(svc: Service, scope: str) -> str:
    return svc.headers[scope]["Authorization"].split()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("ui-quality")
    with running_service(root, f"sqlite:///{root / 'db.sqlite'}", with_ui=True) as svc:
        seed_archive(svc)
        yield Env(svc, _key(svc, "search"), _key(svc, "ingest"))


def _sign_in(env: Env, key: str) -> None:
    client = env.svc.client
    client.cookies.clear()
    page = client.get("/ui/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    resp = client.post(
        "/ui/sign-in", data={"api_key": key, "csrf_token": token}, follow_redirects=False
    )
    assert resp.status_code == 303


def _cell(html: str, table_id: str, row: str) -> list[str]:
    """The cells of the row headed `row` in table `table_id`, tags stripped."""
    table = html[html.index(f'id="{table_id}"') :]
    table = table[: table.index("</table>")]
    for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = [
            re.sub(r"<[^>]+>", "", c).strip()
            for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
        ]
        if cells and cells[0] == row:
            return cells[1:]
    raise AssertionError(f"no row {row!r} in {table_id}")


def test_signed_out_is_sent_to_sign_in(env: Env) -> None:
    env.svc.client.cookies.clear()
    resp = env.svc.client.get("/ui/quality", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/ui/sign-in")


def test_page_shows_rates_n_intervals_plot_and_downloads(env: Env) -> None:
    _sign_in(env, env.viewer)
    resp = env.svc.client.get(f"/ui/quality?{RANGE}")
    assert resp.status_code == 200
    assert resp.headers["content-security-policy"] == CSP
    html = resp.text
    assert '<a href="/ui/quality" aria-current="page">Quality</a>' in html
    assert "8 procedures performed" in html
    headline = re.search(
        r'class="quality-headline"><strong>([^<]+)</strong> of\s*<strong>(\d+)', html
    )
    assert headline.groups() == ("43 % (16–75)", "7")
    assert _cell(html, "rooms-landmarks-colonoscopy", "endo-a") == ["4", "50 % (15–85)", "83 %"]
    assert _cell(html, "rooms-landmarks-colonoscopy", "(none)") == ["1", "0 % (0–79)", "0 %"]
    assert _cell(html, "periods-landmarks-colonoscopy", "2026-01")[:2] == ["3", "33 % (6–79)"]
    assert _cell(html, "requirements-landmarks-colonoscopy", "Terminal ileum")[:3] == [
        "71 % (36–92)", "1", "1",
    ]  # fmt: skip
    missed = html[html.index('class="quality-missed"') :]
    assert missed.index("Retroflexed view of the rectum") < missed.index("Terminal ileum")
    # the plot inline: labelled for screen readers, no inline CSS (the CSP forbids it)
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert 'role="img"' in svg and '<title id="quality-plot-title">' in svg
    assert "style=" not in html and "<style" not in html
    for path in ("plot.png", "export.csv", "report.pdf"):
        assert f'href="/ui/quality/{path}?period=month&amp;{RANGE.replace("&", "&amp;")}"' in html


def test_filters_are_applied_and_kept_in_the_form(env: Env) -> None:
    _sign_in(env, env.viewer)
    html = env.svc.client.get(
        f"/ui/quality?{RANGE}&period=week&room=endo-a&standard=landmarks-colonoscopy"
    ).text
    assert '<option value="week" selected>' in html
    assert '<option value="endo-a" selected>endo-a</option>' in html
    assert 'value="landmarks-colonoscopy" selected' in html
    assert "4 procedures performed" in html and 'id="std-landmarks-upper-gi"' not in html
    assert _cell(html, "periods-landmarks-colonoscopy", "2026-W02")[:2] == ["1", "100 % (21–100)"]
    # values that do not parse are left out; an impossible range is said on the page
    html = env.svc.client.get(f"/ui/quality?{RANGE}&period=year&room=Dr+Who").text
    assert '<option value="month" selected>' in html and "8 procedures performed" in html
    resp = env.svc.client.get("/ui/quality?date_from=2026-03-01&date_to=2026-01-01")
    assert (
        resp.status_code == 422
        and 'role="alert">The start date is after the end date.' in resp.text
    )


def test_downloads_repeat_the_page(env: Env) -> None:
    _sign_in(env, env.viewer)
    client = env.svc.client
    resp = client.get(f"/ui/quality/export.csv?{RANGE}&room=endo-b")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"].startswith(
        'attachment; filename="endoseek-quality-all-'
    )
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    (colon,) = [r for r in rows if r["standard_id"] == "landmarks-colonoscopy"
                and r["group_by"] == "all" and r["measure"] == "complete"]  # fmt: skip
    assert (colon["k"], colon["n"]) == ("1", "2")
    resp = client.get(f"/ui/quality/report.pdf?{RANGE}")
    assert resp.status_code == 200 and resp.content.startswith(b"%PDF-")
    resp = client.get(f"/ui/quality/plot.png?{RANGE}")
    assert resp.status_code == 200 and PILImage.open(io.BytesIO(resp.content)).format == "PNG"


def test_a_key_without_search_scope_is_refused(env: Env) -> None:
    _sign_in(env, env.ingest)
    assert env.svc.client.get("/ui/quality").status_code == 403
    assert env.svc.client.get("/ui/quality/export.csv").status_code == 403
