"""Tables of the PDF report flowed onto A4 pages, several per page.

matplotlib's own table draws every cell as a text and a box (about 10 ms a cell: a five-year
weekly report took 15 s); here each column of a page is one multi-line text, so a page costs
a handful of draws whatever its rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

PAGE_IN = (8.27, 11.69)  # A4 portrait
LEFT, RIGHT, TOP, BOTTOM = 0.07, 0.93, 0.95, 0.07  # figure fractions
FONT = 7
LINESPACING = 1.5
MUTED = "#555555"


@dataclass(frozen=True)
class TableBlock:
    """A titled table; `widths` are shares of the table width, one per column."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    widths: Sequence[float]


@cache
def _pitch() -> float:
    """Distance between two lines of a multi-line text, as a fraction of the page height."""
    fig = Figure(figsize=PAGE_IN)
    renderer = FigureCanvasAgg(fig).get_renderer()

    def height(lines: int) -> float:
        text = fig.text(0, 0, "\n".join(["Ag"] * lines), fontsize=FONT, linespacing=LINESPACING)
        return text.get_window_extent(renderer).height

    return (height(11) - height(1)) / 10 / (PAGE_IN[1] * fig.dpi)


def _new_page(footer: str) -> Figure:
    fig = Figure(figsize=PAGE_IN)
    fig.text(LEFT, BOTTOM - 0.035, footer, fontsize=6, color=MUTED, va="top", wrap=True)
    return fig


def _draw(fig: Figure, y: float, title: str, block: TableBlock, rows: Sequence) -> float:
    """Draw a title, header and `rows` from `y` down; returns the y below them."""
    pitch = _pitch()
    fig.text(LEFT, y, title, fontsize=9, fontweight="bold", va="top")
    y -= 2.0 * pitch
    x = LEFT
    for i, (name, share) in enumerate(zip(block.header, block.widths, strict=True)):
        fig.text(x, y, name, fontsize=FONT, fontweight="bold", va="top")
        column = "\n".join(str(row[i]) for row in rows)
        if column:
            fig.text(x, y - 1.35 * pitch, column, fontsize=FONT, linespacing=LINESPACING,
                     va="top")  # fmt: skip
        x += share * (RIGHT - LEFT)
    rule = y - 1.15 * pitch
    fig.add_artist(Line2D([LEFT, RIGHT], [rule, rule], linewidth=0.6, color=MUTED))
    if not rows:
        fig.text(LEFT, y - 1.35 * pitch, "No procedures.", fontsize=FONT, va="top")
    return y - (1.35 + max(len(rows), 1) + 1.6) * pitch


def table_pages(blocks: Sequence[TableBlock], footer: str) -> Iterator[Figure]:
    """The blocks in order, as many per page as fit; a long table continues on the next."""
    pitch = _pitch()
    fig, y = _new_page(footer), TOP
    for block in blocks:
        rows, part = list(block.rows), 0
        while True:
            room = int((y - BOTTOM) / pitch - 1.35 - 1.6 - 2.0)
            if room < min(len(rows), 3) or (room < 1):  # not even a few rows: next page
                if y < TOP:
                    yield fig
                    fig, y = _new_page(footer), TOP
                    continue
                room = max(room, 1)
            take, rows = rows[:room], rows[room:]
            title = block.title if part == 0 else f"{block.title} (continued)"
            y = _draw(fig, y, title, block, take)
            part += 1
            if not rows:
                break
            yield fig
            fig, y = _new_page(footer), TOP
    yield fig
