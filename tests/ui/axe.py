"""axe-core accessibility audits of a Playwright page.

axe-core is the npm package pinned in tests/ui/package-lock.json (scripts/ensure-axe.sh
installs it into tests/ui/node_modules). It is injected with `page.evaluate`, which runs as a
DevTools evaluation: the UI's Content-Security-Policy (script-src 'self') stays on, so the
audit sees the page exactly as a user's browser does.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent / "package.json"
AXE_JS = PACKAGE.parent / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")  # the impacts a page must not have (issue 17 item 7)


@dataclass(frozen=True)
class Violation:
    """One failed axe rule on a page, with the elements that fail it."""

    rule: str
    impact: str
    help: str
    url: str
    nodes: tuple[tuple[str, str], ...]  # (CSS target, axe's failure summary)

    def describe(self) -> str:
        lines = [f"[{self.impact}] {self.rule}: {self.help} ({self.url})"]
        for target, summary in self.nodes[:8]:
            lines.append(f"    {target}: {' / '.join(summary.splitlines()[1:]) or summary}")
        if len(self.nodes) > 8:
            lines.append(f"    ... and {len(self.nodes) - 8} more")
        return "\n".join(lines)


def pinned_version() -> str:
    return json.loads(PACKAGE.read_text())["devDependencies"]["axe-core"]


@functools.cache
def axe_source() -> str:
    """axe.min.js at the pinned version. Missing or another version: fail in CI (where
    `make test` installs it), skip locally with the command that installs it."""
    installed = AXE_JS.parent / "package.json"
    version = json.loads(installed.read_text())["version"] if installed.exists() else None
    if AXE_JS.exists() and version == pinned_version():
        return AXE_JS.read_text(encoding="utf-8")
    found = f"version {version}" if version else "missing"
    message = f"axe-core {pinned_version()} not installed ({found}): run scripts/ensure-axe.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(reason=message)


@dataclass(frozen=True)
class Report:
    """What axe found on a page: every violation, and how many rules passed (a blank or
    broken page passes few: the caller can tell an empty audit from a clean page)."""

    violations: tuple[Violation, ...]
    passed_rules: int

    def blocking(self) -> list[Violation]:
        return [v for v in self.violations if v.impact in BLOCKING]


def audit(page, *, exclude: tuple[str, ...] = ()) -> Report:  # noqa: ANN001
    """Run every axe rule (WCAG 2.x A/AA and best practices) on the page as it is now;
    `exclude` lists CSS selectors left out."""
    source = axe_source()
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    found = page.evaluate(
        """async ([exclude]) => {
            const context = exclude.length ? {exclude: exclude.map((s) => [s])} : document;
            const out = await axe.run(context, {resultTypes: ['violations']});
            return {
                passes: out.passes.length,
                violations: out.violations.map((v) => ({
                    rule: v.id, impact: v.impact || 'unknown', help: v.help, url: v.helpUrl,
                    nodes: v.nodes.map((n) => [n.target.join(' '), n.failureSummary || '']),
                })),
            };
        }""",
        [list(exclude)],
    )
    violations = tuple(
        Violation(v["rule"], v["impact"], v["help"], v["url"], tuple(map(tuple, v["nodes"])))
        for v in found["violations"]
    )
    return Report(violations, found["passes"])


MIN_PASSED = 10  # a real page passes dozens of rules (landmarks, labels, contrast, ...)


def assert_accessible(page, where: str, *, exclude: tuple[str, ...] = ()) -> None:  # noqa: ANN001
    """No serious or critical axe violation on the page; the message lists each failing rule
    with its elements, so a failure says what to fix."""
    report = audit(page, exclude=exclude)
    bad = report.blocking()
    assert not bad, f"{where} ({page.url}): {len(bad)} serious/critical axe violation(s)\n" + (
        "\n".join(v.describe() for v in bad)
    )
    assert report.passed_rules >= MIN_PASSED, f"{where}: axe checked almost nothing: {report}"
