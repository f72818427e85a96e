"""Documentation of one running service: standards, live reference gallery, thresholds.

One instance per Runtime, created by `hooks.get_ingest_hooks` at start (so a malformed
standard file stops the start) and found again by the API routes through the runtime's hooks.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.documentation.loader import StandardRegistry, load_standards
from app.documentation.policy import threshold_policy
from app.documentation.predict import LandmarkPredictor
from app.documentation.reach import Reach, reach_of
from app.documentation.references import LiveGallery
from app.documentation.schema import Standard
from app.documentation.thresholds import ThresholdPolicy
from app.services.errors import ProblemError
from app.services.runtime import Runtime


class Documentation:
    """What prediction and reports need, shared by the ingest hook and the routes."""

    def __init__(self, rt: Runtime, standards: StandardRegistry | None = None) -> None:
        self.rt = rt
        self.standards = standards if standards is not None else load_standards()
        self.gallery = LiveGallery()

    @property
    def model(self) -> tuple[str, int]:
        """(id, dim) of the model the live index serves."""
        assert self.rt.index is not None
        return self.rt.index.model_id, self.rt.index.dim

    def policy(self, model_id: str) -> ThresholdPolicy:
        return threshold_policy(self.rt.settings.calibration_path, model_id)

    def predictor(self, session: Session, model_id: str, dim: int) -> LandmarkPredictor | None:
        """kNN predictor over the gallery of `model_id` (None while there is no reference)."""
        gallery = self.gallery.get(session, model_id, dim)
        return None if gallery is None else LandmarkPredictor(gallery, self.policy(model_id))

    def reach(self, kind: str) -> Reach:
        """The labels a procedure of `kind` can show (votes of its photos stay within them)."""
        return reach_of(self.standards, kind)

    def standard(self, kind: str, standard_id: str | None) -> Standard:
        """The named standard, or the default one of the kind; 404/422 problems otherwise."""
        if standard_id is None:
            found = self.standards.default_for(kind)
            if found is None:
                raise ProblemError(
                    422, "no_standard", f"No default standard for kind '{kind}'; name one."
                )
            return found
        if standard_id not in self.standards:
            raise ProblemError(404, "standard_not_found", f"No standard '{standard_id}'.")
        found = self.standards[standard_id]
        if found.procedure_kind != kind:
            raise ProblemError(
                422,
                "standard_kind_mismatch",
                f"Standard '{standard_id}' is for {found.procedure_kind}, not {kind}.",
            )
        return found


def documentation_of(rt: Runtime) -> Documentation:
    """The Documentation the ingest hook of `rt` uses (a fresh one if none is installed)."""
    from app.documentation.hooks import DocumentationHook

    for hook in rt.hooks:
        if isinstance(hook, DocumentationHook):
            return hook.docs
    hook = DocumentationHook(Documentation(rt))
    rt.hooks.append(hook)
    return hook.docs
