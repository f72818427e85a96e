"""Keyboard-only steps for the browser tests: where the focus is, and Tab until it
reaches something, checking on the way that every stop shows a focus indicator."""

from __future__ import annotations

import pytest

# The focus indicator: an outline, or (SVG timeline markers) a stroke in the focus colour.
FOCUSED_JS = """() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    const hex = getComputedStyle(document.documentElement).getPropertyValue('--focus').trim();
    const rgb = hex.length === 7
        ? 'rgb(' + [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)).join(', ') + ')'
        : null;
    const stroked = el instanceof SVGElement && rgb !== null
        && [el, ...el.querySelectorAll('*')].some((c) => getComputedStyle(c).stroke === rgb);
    const label = el.getAttribute('aria-label') || '';
    return {
        tag: el.tagName.toLowerCase(), id: el.id, name: el.name || '',
        text: (el.innerText || el.value || label).trim().slice(0, 40),
        href: el.getAttribute('href') || '', type: el.type || '',
        form: el.form ? el.form.getAttribute('action') : '',
        card: el.closest('li[data-pick]') ? el.closest('li[data-pick]').dataset.pick : '',
        ring: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || stroked,
        visible: box.width > 0 && box.height > 0,
    };
}"""


def focused(page) -> dict:  # noqa: ANN001
    """What has the focus: tag, id, name, text, and whether a focus indicator shows."""
    return page.evaluate(FOCUSED_JS)


def from_top(page) -> None:  # noqa: ANN001
    """Move the keyboard's starting point to the top of the page (as after a page load)."""
    page.evaluate(
        "() => { const b = document.body; b.tabIndex = -1; b.focus();"
        " b.removeAttribute('tabindex'); }"
    )


def tab_to(page, want, *, limit: int = 80) -> dict:  # noqa: ANN001
    """Press Tab until `want(focused)` holds; every stop on the way must show a focus ring
    (WCAG 2.4.7) and be on screen. Fails with the path taken."""
    path = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        path.append(now)
        # a player's controls are the browser's own (in its shadow tree): they draw their focus
        ring = now["ring"] or now["tag"] in ("video", "audio")
        assert now["visible"] and ring, f"focus without a visible ring: {now}\n{path}"
        if want(now):
            return now
    pytest.fail(f"not reached by Tab in {limit} presses: {path}")
