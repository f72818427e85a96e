"""Request and response bodies of API v1 (the OpenAPI document is the contract)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import AwareDatetime as _AwareDatetime

from app.db.models import PROCEDURE_CODE_PATTERN, PROCEDURE_CODE_RULE
from app.documentation.explain import ReasonCode

# printable text only: control characters (NUL above all, which PostgreSQL refuses in text
# columns) are a 422, never a database error
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"

ProcedureKind = Literal["upper_gi", "colonoscopy", "other"]


def _utc_representable(value: datetime) -> datetime:
    """A time the database can compare: 0001-01-01T00:00+05:00 is valid ISO 8601 but lies
    before year 1 in UTC, and the drivers convert to UTC (OverflowError, a 500 before)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time lies outside the years 1-9999 in UTC") from None
    return value


#: A timezone-aware time that converts to UTC (every time the API takes).
AwareDatetime = Annotated[_AwareDatetime, AfterValidator(_utc_representable)]


def _pseudonymous(value: str) -> str:
    if not re.fullmatch(PROCEDURE_CODE_PATTERN, value):
        raise ValueError(PROCEDURE_CODE_RULE)
    return value


# a room or operator code: a short pseudonymous token, never a name ("John Smith" is a 422)
ProcedureCode = Annotated[
    str,
    AfterValidator(_pseudonymous),
    Field(
        min_length=1,
        max_length=32,
        description="Pseudonymous code (letters, digits, '.', '_', '-'; no spaces, never a name).",
        examples=["room-3"],
    ),
]


class ProcedureCreate(BaseModel):
    """A device announces a procedure; repeating the same source + external_id is safe."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source": "endo-room-3",
                    "external_id": "2026-11-23-0042",
                    "kind": "upper_gi",
                    "performed_at": "2026-11-23T09:15:00Z",
                    "room": "room-3",
                    "operator": "op-17",
                }
            ]
        },
    )

    source: str = Field(
        min_length=1, max_length=128, pattern=NO_CONTROL_CHARS, description="The sending system."
    )
    external_id: str = Field(
        min_length=1, max_length=256, pattern=NO_CONTROL_CHARS, description="Its id (no PHI)."
    )
    kind: ProcedureKind = "other"
    performed_at: AwareDatetime | None = None
    room: ProcedureCode | None = Field(
        default=None,
        description="Pseudonymous room code for quality reporting. A repeated create fills "
        "an empty code; a different one is a 409 (codes are never overwritten).",
    )
    operator: ProcedureCode | None = Field(
        default=None,
        description="Pseudonymous operator (endoscopist) code, never a name; same rules as room.",
    )


class ProcedureOut(BaseModel):
    """A procedure as the API shows it."""

    id: uuid.UUID
    source: str
    external_id: str
    kind: str
    performed_at: datetime | None
    room: str | None = None
    operator: str | None = None
    created_at: datetime


class ProcedurePage(BaseModel):
    """One page of procedures; pass `next_cursor` as `cursor` for the next page."""

    items: list[ProcedureOut]
    next_cursor: str | None


class LabelOut(BaseModel):
    """A label on an image."""

    label: str
    source: str
    score: float | None


class Landmark(BaseModel):
    """The predicted landmark of a new image (filled in by the documentation module)."""

    label: str | None
    score: float | None


class DicomRef(BaseModel):
    """Where a photo that came as DICOM sits in the PACS (UIDs only, never patient data)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    frame: int = Field(description="1-based frame number within the instance")


class VideoRef(BaseModel):
    """The video a still was picked from, when, for which requirement, and its review."""

    video_id: uuid.UUID
    t_ms: int = Field(description="Presentation time of the still in the video, in ms")
    requirement: str
    label: str
    review: Literal["needs_review", "accepted", "rejected"]


class ImageOut(BaseModel):
    """Image metadata; the file and thumbnail are at the given URLs (same key needed)."""

    id: uuid.UUID
    procedure_id: uuid.UUID
    sha256: str
    mime: str
    width: int
    height: int
    bytes: int
    captured_at: datetime | None
    created_at: datetime
    file_url: str
    thumbnail_url: str
    labels: list[LabelOut] = []
    dicom: DicomRef | None = Field(default=None, description="Set for photos received as DICOM")
    video: VideoRef | None = Field(
        default=None, description="Set for stills picked from a procedure video"
    )


class ProcedureImageOut(ImageOut):
    """A photo of a procedure with its predicted landmark and the link to its metadata."""

    url: str = Field(description="This photo's metadata (GET /v1/images/{id}).")
    landmark: Landmark | None = Field(
        description="The serving model's prediction ('unrecognised' below its threshold); "
        "null while there is no reference gallery."
    )


class ProcedureImagePage(BaseModel):
    """One page of a procedure's photos, oldest first; pass `next_cursor` as `cursor`."""

    items: list[ProcedureImageOut]
    next_cursor: str | None


class IngestItem(BaseModel):
    """Per-file ingest answer."""

    id: uuid.UUID
    sha256: str
    duplicate: bool = Field(description="True when these bytes were already in the procedure.")
    thumbnail_url: str
    file_url: str
    landmark: Landmark | None = None
    fulfils: list[str] = Field(
        default_factory=list, description="Requirements of the procedure's standard now met."
    )


class IngestResponse(BaseModel):
    """Answer to an upload: one item per file, in the order sent."""

    procedure_id: uuid.UUID
    items: list[IngestItem]


class SearchByImage(BaseModel):
    """Search with a stored image as the query."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image_id": "8a6e0804-2bd0-4672-b79d-d97027f9071a",
                    "k": 10,
                    "procedure_kind": "colonoscopy",
                    "exclude_own_procedure": True,
                }
            ]
        },
    )

    image_id: uuid.UUID
    k: int = Field(default=10, ge=1)
    procedure_id: uuid.UUID | None = None
    procedure_kind: ProcedureKind | None = None
    label: str | None = Field(default=None, max_length=128, pattern=NO_CONTROL_CHARS)
    date_from: AwareDatetime | None = None
    date_to: AwareDatetime | None = None
    exclude_own_procedure: bool = False


class SearchForm(BaseModel):
    """Form fields that go with an uploaded query image (multipart)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=10, ge=1)
    procedure_id: uuid.UUID | None = None
    procedure_kind: ProcedureKind | None = None
    label: str | None = Field(default=None, max_length=128, pattern=NO_CONTROL_CHARS)
    date_from: AwareDatetime | None = None
    date_to: AwareDatetime | None = None
    exclude_procedure_id: uuid.UUID | None = None


class SearchHit(BaseModel):
    """One ranked result (score: cosine similarity)."""

    rank: int
    score: float
    image: ImageOut
    procedure: ProcedureOut


class SearchResponse(BaseModel):
    """Ranked results, best first."""

    model_id: str
    k: int
    results: list[SearchHit]


class ModelOut(BaseModel):
    """An embedding model (bundle) known to the service."""

    id: str
    name: str
    dim: int
    active: bool
    metrics: dict[str, Any]
    created_at: datetime


class Problem(BaseModel):
    """Every error: RFC 9457 problem details plus a stable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class LabelCreate(BaseModel):
    """A label set by staff ('manual') or marking a reference image ('reference')."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"label": "cecum"}]})

    label: str = Field(min_length=1, max_length=128, pattern=NO_CONTROL_CHARS)
    source: Literal["manual", "reference"] = "manual"


class LabelSet(BaseModel):
    """The photo's label set by QA staff; `reference` adds it to the reference gallery."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"label": "cecum", "reference": True}]},
    )

    label: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    reference: bool = False


class StandardOut(BaseModel):
    """A documentation standard; `verified` is false while any item is unchecked."""

    id: str
    name: str
    version: int
    procedure_kind: str
    verified: bool


class VideoEvidenceOut(BaseModel):
    """Where an accepted still comes from: its video and time."""

    video_id: uuid.UUID
    t_ms: int = Field(description="Presentation time of the still in the video, in ms")


class EvidenceOut(BaseModel):
    """The best photo for a requirement (the candidate when the requirement is uncertain)."""

    image_id: uuid.UUID
    thumbnail_url: str
    label: str
    score: float
    source: str = Field(
        description="manual, reference or predicted (a photo), or video (an accepted still)"
    )
    threshold: float | None = Field(
        default=None, description="The label's calibrated threshold (None: uncalibrated)."
    )
    video: VideoEvidenceOut | None = Field(
        default=None, description="Set when the evidence is a still picked from a video"
    )


class ReasonOut(BaseModel):
    """Why a requirement is uncertain or missing."""

    code: ReasonCode  # the one list of codes, in app/documentation/explain.py
    detail: str


class UnexpectedOut(BaseModel):
    """A photo whose best whole-gallery match is a landmark this procedure cannot show
    (a mislabelled procedure kind or a mixed-up upload)."""

    image_id: uuid.UUID
    thumbnail_url: str
    label: str
    score: float


class RequirementOut(BaseModel):
    """One requirement of the standard and how the procedure meets it."""

    id: str
    name: str
    required: bool
    verified: bool
    labels: list[str]
    status: Literal["documented", "uncertain", "missing"]
    best: EvidenceOut | None
    reason: ReasonOut | None = Field(default=None, description="Set unless documented.")


class DocumentationOut(BaseModel):
    """A procedure's documentation against one standard, judged with the active model."""

    procedure_id: uuid.UUID
    standard: StandardOut
    model_id: str
    calibrated: bool = Field(description="False: no thresholds, predictions stay uncertain.")
    completeness: float = Field(description="Documented required items / required items.")
    complete: bool
    requirements: list[RequirementOut]
    unexpected: list[UnexpectedOut] = Field(default_factory=list)


class DocumentationSummary(BaseModel):
    """One line of the completeness listing."""

    procedure: ProcedureOut
    standard_id: str
    completeness: float
    complete: bool
    documented: list[str]
    uncertain: list[str]
    missing: list[str]


class DocumentationPage(BaseModel):
    """One page of the listing, newest first; pass `next_cursor` as `cursor` to go on."""

    items: list[DocumentationSummary]
    next_cursor: str | None
