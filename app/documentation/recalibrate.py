"""Re-calibration from the live reference gallery (the UI's "Calibrate again").

After QA staff labelled new references, the thresholds should follow without anyone
preparing a folder for `endoseek calibrate`. The live references are split into folds; each
fold is voted against the others, as the service votes (within the reach of the procedure
kind that can show the label, and a second time without its own class so look-alikes count
as false positives), and the thresholds are fitted on all those held-out votes. The target
precision and the vote are kept from the model's current calibration, so re-calibrating never
silently changes what "documented" promises.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.orm import Session

from app.documentation.references import reference_vectors
from app.documentation.schema import Standard
from app.documentation.service import Documentation
from app.documentation.store import save_calibration
from app.documentation.thresholds import Calibration
from app.documentation.vote import VoteConfig
from app.services import audit

FOLDS = 5
DEFAULT_TARGET = 0.95  # as `endoseek calibrate`
MIN_PER_LABEL = 2  # a label needs a reference in the gallery and one held out


class RecalibrationError(ValueError):
    """The gallery cannot be calibrated (the message says what to add)."""


@dataclass(frozen=True)
class Recalibration:
    """The new calibration and the previous one (None: there was none)."""

    calibration: Calibration
    previous: Calibration | None


def folds_of(labels: list[str], folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per reference, each label spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), dtype=np.int64)
    for label in sorted(set(labels)):
        members = np.flatnonzero(np.asarray(labels, dtype=object) == label)
        rng.shuffle(members)
        out[members] = np.arange(len(members)) % folds
    return out


def cross_fitted(
    vecs: np.ndarray,
    labels: list[str],
    standards: Mapping[str, Standard],
    *,
    model_id: str,
    target_precision: float,
    uncertain_precision: float,
    vote_config: VoteConfig,
    folds: int = FOLDS,
) -> Calibration:
    """Thresholds fitted on every reference voted against the other folds."""
    from app.documentation.calibrate import (
        Votes,
        calibration_from_votes,
        heldout_votes,
        query_reaches,
    )

    fold = folds_of(labels, folds)
    rows, reaches = query_reaches(labels, standards)
    rows_arr = np.asarray(rows, dtype=np.int64)
    closed, opened, truths = [], [], []
    for f in range(folds):
        gallery = fold != f
        picked = np.flatnonzero(fold[rows_arr] == f)
        if not gallery.any() or not len(picked):
            continue
        query_rows = rows_arr[picked]
        q_labels = [labels[i] for i in query_rows]
        c, o = heldout_votes(
            vecs[gallery],
            [lab for lab, g in zip(labels, gallery, strict=True) if g],
            vecs[query_rows],
            q_labels,
            vote_config,
            reaches=[reaches[i] for i in picked],
        )
        closed.append(c)
        opened.append(o)
        truths += q_labels

    def cat(parts: list) -> Votes:
        return Votes(
            np.concatenate([p.predicted for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.correct for p in parts]),
        )

    meta = {
        "n_gallery": len(labels),
        "n_heldout": len(labels),
        "open_set": True,
        "vote_within_reach": bool(standards),
        "method": f"{folds}-fold cross-validation on the live reference gallery",
    }
    calibration, _ = calibration_from_votes(
        cat(closed),
        cat(opened),
        labels,
        truths,
        model_id=model_id,
        vote_config=vote_config,
        target_precision=target_precision,
        uncertain_precision=uncertain_precision,
        meta=meta,
    )
    return calibration


def recalibrate(
    docs: Documentation, session: Session, *, key_id: uuid.UUID | None
) -> Recalibration:
    """Fit the serving model's thresholds on its live references and store them where the
    service reads them (it notices the file's change on its next prediction)."""
    model_id, dim = docs.model
    ids, vecs, by_id = reference_vectors(session, model_id, dim)
    labels = [by_id[int(i)] for i in ids]  # references without a vector of the model: left out
    counts = Counter(labels)
    if len(counts) < 2:
        raise RecalibrationError(
            "Calibration needs reference photos of at least two labels; label more photos."
        )
    thin = sorted(lab for lab, n in counts.items() if n < MIN_PER_LABEL)
    if thin:
        raise RecalibrationError(
            f"Each label needs at least {MIN_PER_LABEL} reference photos; add some of "
            f"{', '.join(thin)}."
        )
    previous = docs.policy(model_id)
    previous = previous if isinstance(previous, Calibration) else None
    calibration = cross_fitted(
        vecs,
        labels,
        docs.standards,
        model_id=model_id,
        target_precision=previous.target_precision if previous else DEFAULT_TARGET,
        uncertain_precision=previous.uncertain_precision if previous else 0.5,
        vote_config=previous.vote if previous else VoteConfig(),
        folds=min(FOLDS, min(counts.values())),
    )
    calibration.meta["fitted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if previous is not None and previous.meta.get("synthetic"):
        calibration.meta["synthetic"] = True
    save_calibration(docs.rt.settings.calibration_path, calibration)
    detail = {"model_id": model_id, "references": len(labels), "labels": len(counts)}
    audit.record(session, key_id, "calibration.fit", model_id, detail)
    session.commit()
    return Recalibration(calibration, previous)
