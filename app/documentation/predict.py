"""Landmark prediction: a kNN vote over the reference gallery, judged by per-label thresholds.

With a `Reach` only the labels the procedure can show (its kind's landmarks and general
labels) can win, so a procedure is never credited with a landmark it can never photograph;
how the vote is narrowed is the calibration's `VoteConfig.reach` (mask or renormalise). The
whole-gallery winner is kept as a signal and flags a photo whose best match is out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.documentation.gallery import Neighbours, ReferenceGallery
from app.documentation.reach import Reach
from app.documentation.thresholds import UNRECOGNISED, Recognition, ThresholdPolicy
from app.documentation.vote import VoteConfig, ranked, ranked_within, within


@dataclass(frozen=True)
class Prediction:
    """The best candidate label of one image, its vote score in [0, 1] and the verdict.

    `label` is the candidate even when unrecognised (so a report can show it as uncertain);
    `landmark` is what to show or store as the image's landmark. The other fields explain the
    vote: the runner-up, the nearest in-reach similarity, the whole-gallery winner and whether
    that winner is a landmark the procedure cannot show (`unexpected`).
    """

    label: str | None
    score: float
    recognition: Recognition
    model_id: str | None
    second_label: str | None = None
    second_score: float = 0.0
    similarity: float | None = None
    gallery_label: str | None = None
    gallery_score: float = 0.0
    unexpected: bool = False

    @property
    def landmark(self) -> str:
        """The candidate label when recognised, else "unrecognised"."""
        if self.recognition == "recognised" and self.label is not None:
            return self.label
        return UNRECOGNISED


class LandmarkPredictor:
    """Predicts landmarks for embedded images against one model's reference gallery."""

    def __init__(
        self,
        gallery: ReferenceGallery,
        policy: ThresholdPolicy,
        vote_config: VoteConfig | None = None,
    ) -> None:
        self.gallery = gallery
        self.policy = policy
        # A calibration carries the vote it was fitted with; thresholds only hold for that vote.
        self.vote_config = vote_config or getattr(policy, "vote", None) or VoteConfig()

    def predict(self, vectors: np.ndarray, reach: Reach | None = None) -> list[Prediction]:
        """One prediction per row of `vectors` ((n, dim) unit vectors of the policy's model).

        Without `reach` the vote runs over the whole gallery (kind unknown).
        """
        vectors = np.atleast_2d(vectors)
        if len(vectors) == 0:
            return []
        k = self.vote_config.k
        excluded = reach.excluded if reach is not None else frozenset()
        # wide enough that k in-reach neighbours survive dropping every out-of-reach reference
        # (renormalise votes on them; mask reads the nearest in-reach similarity from them)
        wide = k + sum(n for lab, n in self.gallery.counts.items() if lab in excluded)
        return [self._one(n, excluded) for n in self.gallery.neighbours(vectors, wide)]

    def _one(self, neighbours: Neighbours, excluded: frozenset[str]) -> Prediction:
        k = self.vote_config.k
        head = Neighbours(neighbours.scores[:k], neighbours.labels[:k])
        whole = ranked(head, self.vote_config)
        inside = within(neighbours, excluded, k) if excluded else head
        votes = ranked_within(neighbours, excluded, self.vote_config) if excluded else whole
        label, score = votes[0] if votes else (None, 0.0)
        second, second_score = votes[1] if len(votes) > 1 else (None, 0.0)
        g_label, g_score = whole[0] if whole else (None, 0.0)
        return Prediction(
            label,
            score,
            self.policy.recognition(label, score),
            self.policy.model_id,
            second_label=second,
            second_score=second_score,
            similarity=float(inside.scores[0]) if len(inside.labels) else None,
            gallery_label=g_label,
            gallery_score=g_score,
            unexpected=g_label is not None and g_label in excluded,
        )
