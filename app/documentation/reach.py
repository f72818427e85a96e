"""What a procedure can show: the labels its kind's standards name, never another kind's landmarks.

An upper endoscopy cannot photograph the ileum, so its photos' votes must not be split
towards colon landmarks (and the reverse). Only landmarks of *other* kinds are excluded:
labels no standard names (findings such as a polyp, configured general labels) stay in reach.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.documentation.schema import Standard


@dataclass(frozen=True)
class Reach:
    """The procedure kind and the landmarks it cannot show (excluded from every vote)."""

    kind: str
    excluded: frozenset[str]

    def allows(self, label: str | None) -> bool:
        return label is not None and label not in self.excluded


def reach_of(standards: Mapping[str, Standard], kind: str, general: Iterable[str] = ()) -> Reach:
    """Landmarks of other kinds' standards, minus this kind's labels and `general` labels."""
    own: set[str] = set(general)
    other: set[str] = set()
    for standard in standards.values():
        (own if standard.procedure_kind == kind else other).update(standard.labels)
    return Reach(kind, frozenset(other - own))


def kinds_of(standards: Mapping[str, Standard], label: str) -> list[str]:
    """The procedure kinds whose standards name `label` (sorted; empty for a general label)."""
    return sorted({s.procedure_kind for s in standards.values() if label in s.labels})


def all_kinds(standards: Mapping[str, Standard]) -> list[str]:
    return sorted({s.procedure_kind for s in standards.values()})
