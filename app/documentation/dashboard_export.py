"""The dashboard as files: a tidy CSV (one rate per row) and a printable PDF report.

The CSV is long-format so a spreadsheet or R can pivot it any way: one row per standard,
grouping (all / period / room / operator), group and measure (complete procedures, or one
requirement documented), each with k, N, the rate and its Wilson 95 % interval.
The PDF (matplotlib, already a dependency) holds the period, standard, the plot and tables.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence

from app.documentation.dashboard import GroupQuality, QualityDashboard, StandardQuality
from app.documentation.dashboard_stats import Rate

NO_CODE = "(none)"  # procedures without a room / operator code (never a valid code)
CSV_COLUMNS = (
    "standard_id",
    "standard_name",
    "group_by",
    "group",
    "period_start",
    "measure",
    "requirement_id",
    "required",
    "k",
    "n",
    "rate",
    "ci_low",
    "ci_high",
    "uncertain",
    "missing",
    "mean_completeness",
)


REASON_WORDS = {
    "no_candidate": "no photo voted for it",
    "no_references": "no reference photos",
    "too_few_references": "too few reference photos",
    "not_calibrated": "model not calibrated",
    "close_second": "close second landmark",
    "low_similarity": "low similarity",
    "below_threshold": "below threshold",
}


def reason_words(code: str) -> str:
    """A reason code in words for tables (the codes are app.documentation.explain's)."""
    return REASON_WORDS.get(code, code.replace("_", " "))


def file_name(dash: QualityDashboard, ext: str) -> str:
    """endoseek-quality-<standard|all>-<from>-<to>-<period>.<ext> (no spaces, no codes)."""
    f = dash.filter
    return f"endoseek-quality-{f.standard_id or 'all'}-{f.date_from}-{f.date_to}-{f.period}.{ext}"


def group_name(g: GroupQuality) -> str:
    return g.key or NO_CODE


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _safe(text: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: quote those."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _rate_cells(rate: Rate) -> list[str]:
    ci = rate.ci
    return [
        str(rate.k),
        str(rate.n),
        _num(rate.rate),
        _num(ci[0] if ci else None),
        _num(ci[1] if ci else None),
    ]


def _groups(sq: StandardQuality) -> Iterator[tuple[str, GroupQuality]]:
    yield "all", sq.overall
    for g in sq.periods:
        yield "period", g
    for g in sq.rooms:
        yield "room", g
    for g in sq.operators:
        yield "operator", g


def csv_rows(dash: QualityDashboard) -> Iterator[list[str]]:
    yield list(CSV_COLUMNS)
    for sq in dash.standards:
        head = [sq.standard.id, _safe(sq.standard.name)]
        for by, g in _groups(sq):
            start = g.start.isoformat() if g.start else ""
            name = "all" if by == "all" else group_name(g)
            yield [
                *head, by, name, start, "complete", "", "",
                *_rate_cells(g.complete), "", "", _num(g.mean_completeness),
            ]  # fmt: skip
            for r in g.requirements:
                req = r.requirement
                yield [
                    *head, by, name, start, "documented", req.id, str(req.required).lower(),
                    *_rate_cells(r.documented), str(r.uncertain), str(r.missing), "",
                ]  # fmt: skip


def dashboard_csv(dash: QualityDashboard) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(csv_rows(dash))
    return buf.getvalue()


def rate_text(rate: Rate) -> str:
    """'72 % (61–81)' or '—' when no procedure is behind it."""
    if rate.rate is None or rate.ci is None:
        return "—"
    low, high = rate.ci
    return f"{rate.rate * 100:.0f} % ({low * 100:.0f}–{high * 100:.0f})"


def filter_text(dash: QualityDashboard) -> str:
    f = dash.filter
    parts = [f"{f.date_from} to {f.date_to}", f"per {f.period}"]
    if f.room:
        parts.append(f"room {f.room}")
    if f.operator:
        parts.append(f"operator {f.operator}")
    return ", ".join(parts)


REQUIREMENT_WIDTHS = (0.38, 0.19, 0.09, 0.08, 0.26)  # shares of the page's table width
GROUP_WIDTHS = (0.3, 0.12, 0.3, 0.28)


def _group_rows(groups: Sequence[GroupQuality]) -> list[list[str]]:
    return [
        [
            group_name(g),
            str(g.complete.n),
            rate_text(g.complete),
            "—" if g.mean_completeness is None else f"{g.mean_completeness * 100:.0f} %",
        ]
        for g in groups
    ]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _requirement_rows(sq: StandardQuality) -> list[list[str]]:
    return [
        [
            _cut(r.requirement.name, 46) + ("" if r.requirement.required else " (optional)"),
            rate_text(r.documented),
            str(r.uncertain),
            str(r.missing),
            ", ".join(f"{reason_words(code)} {n}" for code, n in r.reasons[:2]),
        ]
        for r in sq.overall.requirements
    ]


def dashboard_pdf(dash: QualityDashboard) -> bytes:
    """The plot page, then per standard the requirements, periods, rooms and operators
    tables, flowed onto A4 pages."""
    # matplotlib loads here, not at import: the serving process imports this module
    from matplotlib.backends.backend_pdf import PdfPages

    from app.documentation.dashboard_pages import TableBlock, table_pages
    from app.documentation.dashboard_plot import dashboard_figure

    footer = (
        f"EndoSeek documentation quality · {filter_text(dash)} · model {dash.model_id[:16]}"
        f"{'' if dash.calibrated else ' (uncalibrated)'} · generated "
        f"{dash.generated_at:%Y-%m-%d %H:%M} UTC · rates with Wilson 95 % intervals"
    )
    if dash.synthetic:
        footer += f" · SYNTHETIC DEMO DATA ({dash.synthetic} procedures)"
    buf = io.BytesIO()
    metadata = {"Title": "Photo-documentation quality", "Creator": "EndoSeek", "CreationDate": None}
    with PdfPages(buf, metadata=metadata) as pdf:
        fig = dashboard_figure(dash)
        fig.set_size_inches(11.69, max(8.27, fig.get_size_inches()[1]))  # A4 landscape at least
        fig.supxlabel(footer, fontsize=6, color="#555555")  # laid out below the plots
        pdf.savefig(fig)
        groups = ("N", "Complete (95 % CI)", "Mean completeness")
        blocks = []
        for sq in dash.standards:
            name = sq.standard.name
            blocks += [
                TableBlock(
                    f"{name}: {sq.overall.complete.n} procedures, "
                    f"{rate_text(sq.overall.complete)} complete",
                    ("Requirement", "Documented (95 % CI)", "Uncertain", "Missing", "Why missed"),
                    _requirement_rows(sq),
                    REQUIREMENT_WIDTHS,
                ),
                TableBlock(f"{name}: per {dash.filter.period}", ("Period", *groups),
                           _group_rows(sq.periods), GROUP_WIDTHS),
                TableBlock(f"{name}: per room", ("Room", *groups), _group_rows(sq.rooms),
                           GROUP_WIDTHS),
                TableBlock(f"{name}: per operator", ("Operator", *groups),
                           _group_rows(sq.operators), GROUP_WIDTHS),
            ]  # fmt: skip
        for page in table_pages(blocks, footer):
            pdf.savefig(page)
    return buf.getvalue()
