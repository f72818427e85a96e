"""Required-documentation flags: standards, landmark prediction, calibration and reports.

Calibration needs scikit-learn (about 2 s to import), which serving never does: its two
names load on first use (PEP 562).
"""

from typing import TYPE_CHECKING, Any

from app.documentation.gallery import ExactSearch, Neighbours, ReferenceGallery, VectorSearch
from app.documentation.loader import StandardError, StandardRegistry, load_standard, load_standards
from app.documentation.predict import LandmarkPredictor, Prediction
from app.documentation.report import (
    DocumentationReport,
    Evidence,
    ImageLabel,
    ProcedureImage,
    RequirementResult,
    VideoPick,
    documentation_report,
    image_evidence,
    requirements_fulfilled,
)
from app.documentation.schema import Requirement, Source, Standard
from app.documentation.store import load_calibration, save_calibration
from app.documentation.thresholds import (
    UNRECOGNISED,
    Calibration,
    LabelThreshold,
    ThresholdPolicy,
    Uncalibrated,
)
from app.documentation.vote import VoteConfig, best_label, vote

if TYPE_CHECKING:
    from app.documentation.calibrate import LabelCurve, fit_calibration

__all__ = [
    "UNRECOGNISED",
    "Calibration",
    "DocumentationReport",
    "Evidence",
    "ExactSearch",
    "ImageLabel",
    "LabelCurve",
    "LabelThreshold",
    "LandmarkPredictor",
    "Neighbours",
    "Prediction",
    "ProcedureImage",
    "ReferenceGallery",
    "Requirement",
    "RequirementResult",
    "Source",
    "Standard",
    "StandardError",
    "StandardRegistry",
    "ThresholdPolicy",
    "Uncalibrated",
    "VectorSearch",
    "VideoPick",
    "VoteConfig",
    "best_label",
    "documentation_report",
    "fit_calibration",
    "image_evidence",
    "load_calibration",
    "load_standard",
    "load_standards",
    "requirements_fulfilled",
    "save_calibration",
    "vote",
]


def __getattr__(name: str) -> Any:
    if name in ("LabelCurve", "fit_calibration"):
        from app.documentation import calibrate

        return getattr(calibrate, name)
    raise AttributeError(f"module 'app.documentation' has no attribute {name!r}")
