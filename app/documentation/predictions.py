"""Predicted landmark labels in the database: one row per image and model, written once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from app.db.models import Image, Label
from app.documentation.predict import LandmarkPredictor, Prediction
from app.documentation.reach import Reach
from app.services import vectors

HUMAN = frozenset({"manual", "reference"})


def store_prediction(
    session: Session,
    predictor: LandmarkPredictor,
    image_id: int,
    vector: np.ndarray,
    model_id: str,
    reach: Reach | None = None,
) -> Prediction | None:
    """Predict one image within its procedure's `reach` and add its `predicted` label (the
    candidate, even if unrecognised, so a report can judge it under later thresholds); None
    when the gallery gave no label."""
    prediction = predictor.predict(vector[None, :], reach)[0]
    if prediction.label is None:
        return None
    session.add(
        Label(
            image_id=image_id,
            label=prediction.label,
            source="predicted",
            score=prediction.score,
            model_id=model_id,
        )
    )
    return prediction


def needs_prediction(image: Image, model_id: str) -> bool:
    """No human label and no prediction of `model_id` yet (e.g. photos from before a flip)."""
    return not any(
        lab.source in HUMAN or (lab.source == "predicted" and lab.model_id == model_id)
        for lab in image.labels
    )


def fill_predictions(
    session: Session,
    predictor: LandmarkPredictor,
    images: Sequence[Image],
    model_id: str,
    dim: int,
    reach: Reach | None = None,
) -> int:
    """Predict the images lacking a prediction of `model_id` from their stored vectors.

    After a re-index every photo has a vector of the new model, so this is all it takes for
    the reports to follow the new model; returns how many labels were added.
    """
    todo = np.array([img.id for img in images if needs_prediction(img, model_id)], np.int64)
    added = 0
    for ids, vecs in vectors.vectors_for(session, model_id, dim, todo):
        for image_id, vector in zip(ids.tolist(), vecs, strict=True):
            stored = store_prediction(session, predictor, image_id, vector, model_id, reach)
            added += stored is not None
    return added
