"""The dashboard's figure: per standard, the complete-documentation rate over time and the
documented rate of each requirement, both with Wilson 95 % intervals and N.

One matplotlib Figure serves the PNG a committee pastes into its report, the PDF and the SVG
drawn inside the page. The page's Content-Security-Policy forbids inline styles, so the SVG's
`style` attributes become SVG presentation attributes (same drawing, no inline CSS).
"""

from __future__ import annotations

import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib loads on first render: serving imports this module
    from matplotlib.figure import Figure

from app.documentation.dashboard import GroupQuality, QualityDashboard, StandardQuality

COLOUR = "#1f5f99"
OPTIONAL_COLOUR = "#8fb3d9"
GRID = "#d0d7de"
SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
_LABEL_MAX = 38
MAX_ANNOTATED = 30  # periods with an "n=" label each; beyond that N is in the tables only


def _short(text: str, limit: int = _LABEL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _percent_axis(ax, axis: str = "y") -> None:  # noqa: ANN001 - matplotlib Axes
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0, 105)
    ticks = [0, 25, 50, 75, 100]
    (ax.set_yticks if axis == "y" else ax.set_xticks)(ticks, [f"{t} %" for t in ticks])
    ax.grid(axis=axis, color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _trend(ax, periods: Sequence[GroupQuality], period: str) -> None:  # noqa: ANN001
    xs = [i for i, g in enumerate(periods) if g.complete.n]
    rates = [100 * (periods[i].complete.rate or 0.0) for i in xs]
    lows = [100 * periods[i].complete.ci[0] for i in xs]  # type: ignore[index]
    highs = [100 * periods[i].complete.ci[1] for i in xs]  # type: ignore[index]
    if xs:
        # the line breaks at periods without procedures (NaN): no trend drawn across a gap
        line = [100 * g.complete.rate if g.complete.rate is not None else math.nan
                for g in periods]  # fmt: skip
        ax.plot(range(len(periods)), line, "-", color=COLOUR, linewidth=1.2)
        ax.errorbar(
            xs,
            rates,
            yerr=[[r - lo for r, lo in zip(rates, lows, strict=True)],
                  [hi - r for r, hi in zip(rates, highs, strict=True)]],
            fmt="o",
            color=COLOUR,
            ecolor=COLOUR,
            elinewidth=1,
            capsize=3,
            markersize=4,
        )  # fmt: skip
        small = 6 if len(periods) > 14 else 7
        for x, hi in zip(xs, highs, strict=True) if len(periods) <= MAX_ANNOTATED else ():
            ax.annotate(
                f"n={periods[x].complete.n}",
                (x, min(hi, 100)),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=small,
                color="#333333",
            )
    else:
        ax.text(0.5, 0.5, "No procedures", transform=ax.transAxes, ha="center", va="center")
    step = max(1, len(periods) // 13 + (len(periods) % 13 > 0))
    ax.set_xticks(range(0, len(periods), step), [g.key for g in periods][::step])
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_xlim(-0.6, max(len(periods), 1) - 0.4)
    _percent_axis(ax)
    ax.set_ylabel("Complete documentation")
    ax.set_title(f"Procedures completely documented, per {period} (95 % CI)", fontsize=9)


def _requirements(ax, sq: StandardQuality) -> None:  # noqa: ANN001
    reqs = sq.overall.requirements
    n = sq.overall.complete.n
    ys = list(range(len(reqs)))[::-1]  # the standard's order, top down
    rates = [100 * (r.documented.rate or 0.0) for r in reqs]
    colours = [COLOUR if r.requirement.required else OPTIONAL_COLOUR for r in reqs]
    ax.barh(ys, rates, color=colours, height=0.6)
    if n:
        lows = [100 * r.documented.ci[0] for r in reqs]  # type: ignore[index]
        highs = [100 * r.documented.ci[1] for r in reqs]  # type: ignore[index]
        ax.errorbar(
            rates,
            ys,
            xerr=[[r - lo for r, lo in zip(rates, lows, strict=True)],
                  [hi - r for r, hi in zip(rates, highs, strict=True)]],
            fmt="none",
            ecolor="#222222",
            elinewidth=0.8,
            capsize=2,
        )  # fmt: skip
    names = [_short(r.requirement.name) + ("" if r.requirement.required else " (optional)")
             for r in reqs]  # fmt: skip
    ax.set_yticks(ys, names)
    ax.tick_params(axis="y", labelsize=7 if len(reqs) > 12 else 8)
    _percent_axis(ax, "x")
    ax.set_title(f"Documented per requirement (N = {n}, 95 % CI)", fontsize=9)


def dashboard_figure(dash: QualityDashboard) -> Figure:
    """One row per standard: the trend (left) and the requirements (right)."""
    rows = max(1, len(dash.standards))
    heights = [max(3.4, 0.24 * len(s.overall.requirements) + 1.4) for s in dash.standards] or [3.4]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, sum(heights) + 0.5), layout="constrained")
    f = dash.filter
    note = " — SYNTHETIC DEMO DATA" if dash.synthetic else ""
    fig.suptitle(
        f"Photo-documentation quality, {f.date_from} to {f.date_to}{note}",
        fontsize=11,
        fontweight="bold",
    )
    if not dash.standards:
        fig.text(0.5, 0.5, "No standard", ha="center")
        return fig
    subfigs = fig.subfigures(rows, 1, height_ratios=heights, squeeze=False)[:, 0]
    for sub, sq in zip(subfigs, dash.standards, strict=True):
        codes = [x for x in (f.room and f"room {f.room}", f.operator and f"operator {f.operator}")
                 if x]  # fmt: skip
        scope = f" — {', '.join(codes)}" if codes else ""
        sub.suptitle(f"{sq.standard.name}{scope}", fontsize=10)
        left, right = sub.subplots(1, 2, width_ratios=[1.15, 1])
        _trend(left, sq.periods, f.period)
        _requirements(right, sq)
    return fig


def _render(fig: Figure, fmt: str, **kw: object) -> bytes:
    """Render without touching matplotlib's global rcParams (requests run in threads)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def figure_png(fig: Figure, dpi: int = 200) -> bytes:
    """A print-quality PNG (about 2200 px wide) to paste into a document."""
    return _render(fig, "png", dpi=dpi, metadata={"Software": None}, facecolor="white")


_STYLE_ITEM = re.compile(r"\s*([a-z-]+)\s*:\s*([^;]+?)\s*(?:;|$)")


def inline_svg(fig: Figure, title: str, description: str) -> str:
    """The figure as an <svg> element for the page: no inline CSS, labelled for screen
    readers (role img, title and description), scaled by the stylesheet."""
    raw = _render(fig, "svg", metadata={"Date": None, "Creator": None}, facecolor="white")
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    root = ET.fromstring(raw)
    for parent in root.iter():
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}style", f"{{{SVG_NS}}}metadata"):
                parent.remove(child)  # the global style rule is set on the root below
        style = parent.attrib.pop("style", None)
        if style:
            for name, value in _STYLE_ITEM.findall(style):
                parent.attrib.setdefault(name, value)
    root.set("stroke-linejoin", "round")
    root.set("stroke-linecap", "butt")
    for name in ("width", "height"):
        root.attrib.pop(name, None)
    root.set("role", "img")
    root.set("aria-labelledby", "quality-plot-title quality-plot-desc")
    root.set("class", "quality-plot")
    desc = ET.Element(f"{{{SVG_NS}}}desc", {"id": "quality-plot-desc"})
    desc.text = description
    head = ET.Element(f"{{{SVG_NS}}}title", {"id": "quality-plot-title"})
    head.text = title
    root.insert(0, desc)
    root.insert(0, head)
    return ET.tostring(root, encoding="unicode")
