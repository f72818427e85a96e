"""Similarity-weighted k-nearest-neighbour vote: neighbours -> a score in [0, 1] per label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from app.documentation.gallery import Neighbours

ReachMode = Literal["renormalise", "mask"]


@dataclass(frozen=True)
class VoteConfig:
    """How neighbours are weighted; stored with the calibration that was fitted with it.

    Weights are exp(similarity / temperature): a low temperature lets the nearest neighbours
    dominate, which matters when all similarities sit in a narrow band (colour descriptors).

    `reach` is how a procedure's reach narrows the vote. "mask": shares over the whole-gallery
    top k, then the best in-reach label wins (an out-of-reach neighbour's weight is simply
    not credited). "renormalise": the top k in-reach neighbours only, shares among them.
    Calibrations saved without the field load with the default.
    """

    k: int = 10
    temperature: float = 0.02
    reach: ReachMode = "mask"

    def __post_init__(self) -> None:
        if self.reach not in get_args(ReachMode):
            raise ValueError(f"reach must be one of {get_args(ReachMode)}, not {self.reach!r}")


def vote(neighbours: Neighbours, config: VoteConfig) -> dict[str, float]:
    """Each label's share of the neighbours' total weight (sums to 1; empty when no neighbour)."""
    if len(neighbours.labels) == 0:
        return {}
    scores = neighbours.scores[: config.k].astype(np.float64)
    weights = np.exp((scores - scores.max()) / config.temperature)
    total = float(weights.sum())
    shares: dict[str, float] = {}
    for label, weight in zip(neighbours.labels[: config.k], weights, strict=True):
        shares[label] = shares.get(label, 0.0) + float(weight) / total
    return shares


def within(neighbours: Neighbours, excluded: frozenset[str], k: int) -> Neighbours:
    """The first `k` neighbours whose label is not excluded (a vote within a procedure's reach)."""
    keep = [i for i, lab in enumerate(neighbours.labels) if lab not in excluded][:k]
    return Neighbours(neighbours.scores[keep], tuple(neighbours.labels[i] for i in keep))


def ranked(neighbours: Neighbours, config: VoteConfig) -> list[tuple[str, float]]:
    """(label, share) best first; ties go to the label of the nearer neighbour."""
    shares = vote(neighbours, config)
    order = sorted(shares, key=lambda lab: (-shares[lab], neighbours.labels.index(lab)))
    return [(lab, min(1.0, shares[lab])) for lab in order]


def best_label(neighbours: Neighbours, config: VoteConfig) -> tuple[str | None, float]:
    """The winning label and its share; ties go to the label of the nearer neighbour."""
    shares = vote(neighbours, config)
    if not shares:
        return None, 0.0
    label = max(shares, key=lambda lab: (shares[lab], -neighbours.labels.index(lab)))
    return label, min(1.0, shares[label])


def ranked_within(
    neighbours: Neighbours, excluded: frozenset[str], config: VoteConfig
) -> list[tuple[str, float]]:
    """(label, share) best first among in-reach labels, by `config.reach` (see VoteConfig).

    `neighbours` may be wider than k: "renormalise" needs k in-reach ones after skipping.
    """
    if not excluded or config.reach == "mask":
        head = Neighbours(neighbours.scores[: config.k], neighbours.labels[: config.k])
        return [(lab, s) for lab, s in ranked(head, config) if lab not in excluded]
    return ranked(within(neighbours, excluded, config.k), config)


def best_within(
    neighbours: Neighbours, excluded: frozenset[str], config: VoteConfig
) -> tuple[str | None, float]:
    """The winning in-reach label and its share (None, 0.0 when no in-reach label votes)."""
    votes = ranked_within(neighbours, excluded, config)
    return votes[0] if votes else (None, 0.0)
