"""Per landmark: how many references, the calibrated threshold, and what to do next.

The reference-gallery page reads these rows, so QA staff see which landmark still lacks
references or a reachable threshold before a checklist item comes out missing or uncertain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from app.documentation.explain import MIN_REFERENCES
from app.documentation.reach import kinds_of
from app.documentation.schema import Standard
from app.documentation.thresholds import Calibration, LabelThreshold, ThresholdPolicy

Status = Literal[
    "ok", "no_references", "alternative", "too_few_references", "not_calibrated", "unreachable"
]


@dataclass(frozen=True)
class LandmarkRow:
    """One label of the gallery page."""

    label: str
    kinds: tuple[str, ...]  # procedure kinds whose standards name it (none: a general label)
    standards: tuple[str, ...]  # ids of the standards that ask for it
    references: int
    threshold: LabelThreshold | None
    status: Status
    advice: str

    @property
    def general(self) -> bool:
        return not self.kinds


def _status(
    label: str, references: int, policy: ThresholdPolicy, siblings: Iterable[str] = ()
) -> tuple[Status, LabelThreshold | None, str]:
    entry = policy.labels.get(label) if isinstance(policy, Calibration) else None
    if references == 0 and siblings:
        return (
            "alternative",
            entry,
            f"No reference photos, but its requirements also accept {', '.join(siblings)}, "
            f"which has references; add {label} references only to tell it apart.",
        )
    if references == 0:
        return (
            "no_references",
            entry,
            f"No reference photos: no photo can be recognised as {label}. Label photos that "
            "show it (the suggestions below help).",
        )
    if references < MIN_REFERENCES:
        return (
            "too_few_references",
            entry,
            f"{references} reference photo(s): add at least {MIN_REFERENCES} so its vote can "
            "reach a calibrated precision, then calibrate again.",
        )
    if entry is None:
        return (
            "not_calibrated",
            None,
            "No calibrated threshold for the serving model: calibrate again, until then its "
            "photos stay uncertain.",
        )
    if entry.documented is None:
        target = policy.target_precision if isinstance(policy, Calibration) else 0.0
        return (
            "unreachable",
            entry,
            f"Never reached the target precision {target:.2f} on held-out references: add "
            "references of it and of the labels it is confused with, then calibrate again.",
        )
    return (
        "ok",
        entry,
        f"Documented from a score of {entry.documented:.2f} (precision "
        f"{entry.precision or 0:.2f}, recall {entry.recall or 0:.2f} on held-out references).",
    )


def landmark_rows(
    labels: Iterable[str],
    standards: Mapping[str, Standard],
    references: Mapping[str, int],
    policy: ThresholdPolicy,
) -> list[LandmarkRow]:
    """One row per label, in the given order."""
    rows = []
    for label in dict.fromkeys(labels):
        siblings = _siblings(label, standards, references)
        status, entry, advice = _status(label, references.get(label, 0), policy, siblings)
        named = tuple(sorted(s.id for s in standards.values() if label in s.labels))
        rows.append(
            LandmarkRow(
                label,
                tuple(kinds_of(standards, label)),
                named,
                references.get(label, 0),
                entry,
                status,
                advice,
            )
        )
    return rows


def _siblings(
    label: str, standards: Mapping[str, Standard], references: Mapping[str, int]
) -> list[str]:
    """Labels with references that every requirement naming `label` in a default standard
    also accepts (then `label` is an alternative, not a gap). Empty unless all such
    requirements are covered."""
    reqs = [
        r
        for s in standards.values()
        if s.default_for_kind
        for r in s.requirements
        if label in r.labels
    ]
    covered = [sorted(o for o in r.labels if o != label and references.get(o, 0)) for r in reqs]
    if not reqs or not all(covered):
        return []
    return sorted({o for names in covered for o in names})


def overview_labels(
    standards: Mapping[str, Standard], references: Mapping[str, int], policy: ThresholdPolicy
) -> list[str]:
    """The labels the overview lists: every default standard's landmarks (requirement
    order), then any other label with references or a threshold (sorted)."""
    first = [
        lab
        for s in sorted(standards.values(), key=lambda s: s.procedure_kind)
        if s.default_for_kind
        for r in s.requirements
        for lab in r.labels
    ]
    more = set(references)
    if isinstance(policy, Calibration):
        more |= set(policy.labels)
    return list(dict.fromkeys([*first, *sorted(more)]))


def stale(policy: ThresholdPolicy, references: Mapping[str, int]) -> str | None:
    """Why the thresholds may be out of date, or None (no calibration is not 'stale')."""
    if not isinstance(policy, Calibration):
        return None
    then = policy.meta.get("n_gallery")
    now = sum(references.values())
    if then is not None and int(then) != now:
        return (
            f"The thresholds were fitted on {then} reference photos; the gallery now has {now}. "
            "Calibrate again so they follow the new references."
        )
    return None
