"""A procedure's documentation report as HL7 FHIR R5 (`fhir.resources`, validated on build).

Shape: a Bundle of type "collection" holding one DiagnosticReport and one Observation per
requirement of the standard; DiagnosticReport.result references the Observations by their
fullUrl ("urn:uuid:..."). A Bundle rather than contained Observations because FHIR reserves
contained resources for content that cannot stand on its own, while each requirement's
result is a full observation a receiving system may want to store and query by itself.

Ids are deterministic (uuid5 of procedure id, standard id and version, requirement id), so
the same report gives the same document ids every time; `issued` and the Bundle timestamp are
the time of the export.

Status: the report is "preliminary" while any requirement is uncertain (a machine candidate
below its calibrated threshold, waiting for a human), else "final"; each Observation is
"preliminary" when uncertain, else "final". Stills picked from a video whose pick awaits
review are no evidence at all (app.documentation.report), so they do not appear.

No subject and no patient data at all: EndoSeek holds no patient identity; the procedure is
named by its EndoSeek id only (identifier system "urn:endoseek:procedure"), and the receiving
system links it to its own patient record.

Per Observation: code = the requirement (system "urn:endoseek:standard:<standard id>", its
version, the requirement id and name); valueCodeableConcept = documented / uncertain / missing
(system "urn:endoseek:documentation-status"); the evidence photo as `derivedFrom`, a logical
Reference (no literal URL: EndoSeek images are not FHIR resources) of type DocumentReference
(R5's type for photos, Media is gone) whose identifier is the EndoSeek image uid (system
"urn:endoseek:image"); components (system "urn:endoseek:component") for required, the
evidence label and source, the score and threshold (UCUM "1"), the reason code with its
sentence for uncertain and missing, and for a still from a video the video (a logical
Reference, system "urn:endoseek:video") and its time (UCUM "ms"). The DiagnosticReport lists
the evidence photos once more as `media` (key images), with the requirement as comment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fhir.resources.bundle import Bundle
from fhir.resources.diagnosticreport import DiagnosticReport
from fhir.resources.observation import Observation

from app.documentation.procedure_report import ProcedureDocumentation
from app.documentation.report import RequirementResult

MEDIA_TYPE = "application/fhir+json"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:endoseek:fhir")  # of the deterministic ids
REPORT_SYSTEM = "urn:endoseek:report"
PROCEDURE_SYSTEM = "urn:endoseek:procedure"
IMAGE_SYSTEM = "urn:endoseek:image"
VIDEO_SYSTEM = "urn:endoseek:video"
STATUS_SYSTEM = "urn:endoseek:documentation-status"
REASON_SYSTEM = "urn:endoseek:documentation-reason"
COMPONENT_SYSTEM = "urn:endoseek:component"
LABEL_SYSTEM = "urn:endoseek:label"
SOURCE_SYSTEM = "urn:endoseek:evidence-source"
UCUM = "http://unitsofmeasure.org"
_STATUS_NAMES = {"documented": "Documented", "uncertain": "Uncertain", "missing": "Missing"}


def standard_system(standard_id: str) -> str:
    return f"urn:endoseek:standard:{standard_id}"


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def _component(code: str, display: str, **value: object) -> dict:
    concept = {"coding": [{"system": COMPONENT_SYSTEM, "code": code, "display": display}]}
    return {"code": concept, **value}


def _quantity(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _image_ref(uid: uuid.UUID, display: str | None = None) -> dict:
    ref: dict = {
        "type": "DocumentReference",
        "identifier": {"system": IMAGE_SYSTEM, "value": str(uid)},
    }
    if display:
        ref["display"] = display
    return ref


def _observation(judged: ProcedureDocumentation, result: RequirementResult, oid: str) -> dict:
    standard, req, best = judged.report.standard, result.requirement, result.best
    components = [_component("required", "Required by the standard", valueBoolean=req.required)]
    derived = []
    if best is not None:
        uid = judged.images[best.image_id].uid
        derived.append(_image_ref(uid))
        components.append(
            _component(
                "evidence-label",
                "Label of the evidence photo",
                valueCodeableConcept={"coding": [{"system": LABEL_SYSTEM, "code": best.label}]},
            )
        )
        components.append(
            _component(
                "evidence-source",
                "Source of the evidence label",
                valueCodeableConcept={"coding": [{"system": SOURCE_SYSTEM, "code": best.source}]},
            )
        )
        components.append(_component("score", "Score", valueQuantity=_quantity(best.score, "1")))
        if best.threshold is not None:
            components.append(
                _component(
                    "threshold",
                    "Calibrated threshold",
                    valueQuantity=_quantity(best.threshold, "1"),
                )
            )
        if best.pick is not None and best.pick.video_id is not None:
            video = {"type": "DocumentReference"}
            video["identifier"] = {"system": VIDEO_SYSTEM, "value": str(best.pick.video_id)}
            components.append(_component("video", "Source video", valueReference=video))
            components.append(
                _component(
                    "video-time",
                    "Time of the still in the video",
                    valueQuantity=_quantity(best.pick.t_ms, "ms"),
                )
            )
    if result.reason is not None:
        reason = {
            "coding": [{"system": REASON_SYSTEM, "code": result.reason.code}],
            "text": result.reason.detail,
        }
        components.append(_component("reason", "Reason", valueCodeableConcept=reason))
    status_coding = {
        "system": STATUS_SYSTEM,
        "code": result.status,
        "display": _STATUS_NAMES[result.status],
    }
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "preliminary" if result.status == "uncertain" else "final",
        "code": {
            "coding": [
                {
                    "system": standard_system(standard.id),
                    "version": str(standard.version),
                    "code": req.id,
                    "display": req.name,
                }
            ],
            "text": req.name,
        },
        "valueCodeableConcept": {"coding": [status_coding], "text": _STATUS_NAMES[result.status]},
        "derivedFrom": derived or None,
        "component": components,
    }


def documentation_bundle(judged: ProcedureDocumentation, now: datetime | None = None) -> Bundle:
    """The report as a FHIR R5 collection Bundle (DiagnosticReport first, then Observations)."""
    issued = (now or datetime.now(UTC)).isoformat()
    report, procedure = judged.report, judged.procedure
    standard = report.standard
    base = (procedure.id, standard.id, standard.version)
    obs_ids = [_uuid(*base, "requirement", r.requirement.id) for r in report.results]
    observations = [
        Observation.model_validate({**_observation(judged, r, oid), "issued": issued})
        for r, oid in zip(report.results, obs_ids, strict=True)
    ]
    required = report.required
    documented = sum(r.status == "documented" for r in required)
    media = [
        {"comment": r.requirement.name, "link": _image_ref(judged.images[r.best.image_id].uid)}
        for r in report.results
        if r.status == "documented" and r.best is not None
    ]
    preliminary = any(r.status == "uncertain" for r in report.results)
    report_id = _uuid(*base, "report")
    performed = procedure.performed_at
    diagnostic = DiagnosticReport.model_validate(
        {
            "resourceType": "DiagnosticReport",
            "id": report_id,
            "identifier": [{"system": PROCEDURE_SYSTEM, "value": str(procedure.id)}],
            "status": "preliminary" if preliminary else "final",
            "code": {
                "coding": [
                    {
                        "system": REPORT_SYSTEM,
                        "code": "photo-documentation",
                        "display": "Endoscopy photo-documentation report",
                    }
                ],
                "text": f"Endoscopy photo-documentation report ({standard.name})",
            },
            "effectiveDateTime": None if performed is None else performed.isoformat(),
            "issued": issued,
            "result": [{"reference": f"urn:uuid:{oid}", "type": "Observation"} for oid in obs_ids],
            "media": media or None,
            "conclusion": (
                f"{documented} of {len(required)} required landmarks documented "
                f"({standard.name}, version {standard.version})."
            ),
        }
    )
    resources = [(report_id, diagnostic)] + list(zip(obs_ids, observations, strict=True))
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "id": _uuid(*base, "bundle"),
            "type": "collection",
            "timestamp": issued,
            "entry": [{"fullUrl": f"urn:uuid:{rid}", "resource": res} for rid, res in resources],
        }
    )
