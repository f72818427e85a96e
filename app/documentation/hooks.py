"""The ingest hook: predict each new photo's landmark and say which requirements it fulfils."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from app.db.models import Embedding, Image, Procedure
from app.documentation.predictions import store_prediction
from app.documentation.report import ImageLabel, ProcedureImage, requirements_fulfilled
from app.documentation.service import Documentation
from app.services import vectors
from app.services.ingest_hooks import IngestAnnotation, IngestHook
from app.services.runtime import Runtime


def _model_of(session: Session, image: Image, vector: np.ndarray) -> str | None:
    """The model of the vector being stored with `image` (safe across a model switch)."""
    raw = vectors.to_bytes(vector)
    for obj in session.new:
        if isinstance(obj, Embedding) and obj.image_id == image.id and obj.vector == raw:
            return obj.model_id
    return None


class DocumentationHook:
    """Stores a `predicted` label in the ingest transaction and answers landmark + fulfils."""

    def __init__(self, docs: Documentation) -> None:
        self.docs = docs

    def __call__(
        self, session: Session, procedure: Procedure, image: Image, vector: np.ndarray
    ) -> IngestAnnotation | None:
        model_id = _model_of(session, image, vector) or self.docs.model[0]
        predictor = self.docs.predictor(session, model_id, len(vector))
        if predictor is None:
            return None
        # the procedure's kind is known here and fixed: vote within its reach once, at ingest
        reach = self.docs.reach(procedure.kind)
        prediction = store_prediction(session, predictor, image.id, vector, model_id, reach)
        if prediction is None:
            return None
        fulfils: list[str] = []
        standard = self.docs.standards.default_for(procedure.kind)
        if standard is not None:
            labels = [ImageLabel(prediction.label or "", "predicted", prediction.score, model_id)]
            results = requirements_fulfilled(
                standard, ProcedureImage(image.id, labels), predictor.policy
            )
            fulfils = [r.requirement.id for r in results if r.status == "documented"]
        return IngestAnnotation(prediction.landmark, prediction.score, fulfils)


def get_ingest_hooks(runtime: Runtime) -> list[IngestHook]:
    """Called by the app at start: loads (validates) the standards; a bad file stops the start."""
    return [DocumentationHook(Documentation(runtime))]
