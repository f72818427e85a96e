"""The label vocabulary: every landmark the standards name, plus the shipped general labels.

Labels are picked, never typed: a free-text label that no standard names can document nothing
and silently splits the reference gallery ("z line" beside "z-line"). The standards define the
landmarks; `general-labels.yaml` the findings any procedure may show (HyperKvasir's finding
folder names, so its folders import as they are).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from app.documentation.schema import Standard

if TYPE_CHECKING:
    from app.documentation.loader import StandardRegistry

# shortcut keys in the order labels get them; j and k stay free to move between photos
SHORTCUT_KEYS = "1234567890qwertyuiopasdfghlzxcvbnm"


@dataclass(frozen=True)
class Vocabulary:
    """The labels QA staff may give a photo: the standards' landmarks and general labels."""

    landmarks: tuple[str, ...]  # sorted
    general: tuple[str, ...]  # in the order of general-labels.yaml

    def __contains__(self, label: object) -> bool:
        return label in self.landmarks or label in self.general

    @property
    def labels(self) -> tuple[str, ...]:
        """Landmarks (sorted), then general labels (in their file's order)."""
        return self.landmarks + tuple(g for g in self.general if g not in self.landmarks)

    def for_standard(self, standard: Standard | None) -> tuple[str, ...]:
        """The standard's labels in requirement order, then the general labels, then every
        other landmark: what a photo checked against `standard` most likely shows first."""
        first = [] if standard is None else [lab for r in standard.requirements for lab in r.labels]
        return tuple(dict.fromkeys([*first, *self.general, *self.landmarks]))


def shortcuts(labels: Iterable[str]) -> list[tuple[str, str]]:
    """(key, label) for the first labels, one key each (the rest are picked from the list)."""
    return list(zip(SHORTCUT_KEYS, labels, strict=False))


def general_labels_path() -> Path:
    return Path(str(files("app.documentation") / "general-labels.yaml"))


def read_general_labels(path: Path) -> tuple[str, ...]:
    """The `labels:` list of a general-labels file, checked like the standards' labels."""
    from pydantic import TypeAdapter

    from app.documentation.schema import Slug

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    labels = TypeAdapter(list[Slug]).validate_python(data.get("labels", []))
    return tuple(dict.fromkeys(labels))  # the file's order: the common findings first


def vocabulary_of(standards: Mapping[str, Standard], general: Iterable[str] = ()) -> Vocabulary:
    """The vocabulary of `standards` and `general` labels."""
    landmarks = sorted({lab for s in standards.values() for lab in s.labels})
    return Vocabulary(
        tuple(landmarks), tuple(g for g in dict.fromkeys(general) if g not in landmarks)
    )


@lru_cache(maxsize=4)
def _cached(directory: str, stamp: tuple[float, ...]) -> tuple[StandardRegistry, Vocabulary]:
    from app.documentation.loader import load_standards

    standards = load_standards(Path(directory))
    return standards, vocabulary_of(standards, read_general_labels(general_labels_path()))


def _shipped() -> tuple[StandardRegistry, Vocabulary]:
    from app.documentation import loader

    directory = loader.standards_dir()
    stamp = tuple(p.stat().st_mtime for p in sorted(directory.glob("*.yaml")))
    return _cached(str(directory), (*stamp, general_labels_path().stat().st_mtime))


def shipped_vocabulary() -> Vocabulary:
    """The vocabulary of the standards the service loads (re-read when a file changes)."""
    return _shipped()[1]


def shipped_standards() -> StandardRegistry:
    """The standards the vocabulary was built from (the ones the service loads)."""
    return _shipped()[0]
