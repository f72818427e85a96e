"""FHIR R5 export of a procedure's documentation (validated with fhir.resources)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import sqlalchemy as sa
from fhir.resources.bundle import Bundle
from fhir.resources.diagnosticreport import DiagnosticReport
from fhir.resources.observation import Observation

from app.db.models import AuditEvent
from app.documentation import fhir
from app.documentation.explain import Reason
from app.documentation.procedure_report import ProcedureDocumentation
from app.documentation.report import DocumentationReport, Evidence, RequirementResult, VideoPick
from app.documentation.schema import Standard
from tests.app.documentation.service_support import Photos, Service, statuses

NIL = "00000000-0000-4000-8000-000000000000"


def _fhir(svc: Service, procedure_id: str, **params: str):  # noqa: ANN202
    return svc.client.get(
        f"/v1/procedures/{procedure_id}/documentation/fhir",
        params=params,
        headers=svc.headers["search"],
    )


def _parts(body: dict) -> tuple[Bundle, DiagnosticReport, list[Observation]]:
    bundle = Bundle.model_validate(body)
    resources = [e.resource for e in bundle.entry]
    report = resources[0]
    assert isinstance(report, DiagnosticReport)
    observations = resources[1:]
    assert all(isinstance(o, Observation) for o in observations)
    return bundle, report, observations  # type: ignore[return-value]


def _component(obs: Observation, code: str):  # noqa: ANN202
    found = [c for c in obs.component or [] if c.code.coding[0].code == code]
    return found[0] if found else None


def test_fhir_bundle_matches_the_json_report(svc: Service, photos: Photos) -> None:
    proc = svc.procedure("fhir", performed_at="2026-01-05T09:30:00Z")
    items = svc.upload(
        proc, [photos.procedure_photo("ileum"), photos.procedure_photo("retroflex-rectum")]
    )
    doc = svc.documentation(proc)
    r = _fhir(svc, proc)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    bundle, report, observations = _parts(body)
    assert bundle.type == "collection"
    # one Observation per requirement, in the standard's order, with the same statuses
    assert len(observations) == len(doc["requirements"])
    got = {}
    for obs in observations:
        coding = obs.code.coding[0]
        assert coding.system == fhir.standard_system(doc["standard"]["id"])
        value = obs.valueCodeableConcept.coding[0]
        assert value.system == fhir.STATUS_SYSTEM
        got[coding.code] = value.code
        assert obs.status == ("preliminary" if value.code == "uncertain" else "final")
    assert got == statuses(doc)
    # the report references every Observation by its fullUrl
    urls = [e.fullUrl for e in bundle.entry[1:]]
    assert [ref.reference for ref in report.result] == urls
    assert all(u.startswith("urn:uuid:") for u in urls)
    assert report.identifier[0].system == fhir.PROCEDURE_SYSTEM
    assert report.identifier[0].value == proc
    assert report.effectiveDateTime is not None and report.effectiveDateTime.year == 2026
    documented = sum(
        1 for x in doc["requirements"] if x["required"] and x["status"] == "documented"
    )
    required = sum(1 for x in doc["requirements"] if x["required"])
    assert report.conclusion.startswith(f"{documented} of {required} required landmarks")
    assert report.status in ("final", "preliminary")
    # evidence: the image uid as a logical reference, score, reason when not documented
    by_id = {o.code.coding[0].code: o for o in observations}
    for req in doc["requirements"]:
        obs = by_id[req["id"]]
        assert _component(obs, "required").valueBoolean is req["required"]
        if req["best"] is None:
            assert not obs.derivedFrom
        else:
            ref = obs.derivedFrom[0]
            assert ref.identifier.system == fhir.IMAGE_SYSTEM
            assert ref.identifier.value == req["best"]["image_id"]
            score = _component(obs, "score").valueQuantity.value
            assert float(score) == req["best"]["score"]
        reason = _component(obs, "reason")
        if req["reason"] is None:
            assert reason is None
        else:
            assert reason.valueCodeableConcept.coding[0].code == req["reason"]["code"]
    ileum = by_id["ileum"]
    assert ileum.derivedFrom[0].identifier.value == items[0]["id"]
    # no patient-like data: no subject anywhere
    assert "subject" not in json.dumps(body) and "patient" not in json.dumps(body).lower()
    with svc.rt.sessions() as s:
        q = sa.select(AuditEvent.action).where(AuditEvent.target == proc)
        assert "procedure.documentation.fhir" in set(s.scalars(q))


def test_fhir_ids_are_deterministic(svc: Service, photos: Photos) -> None:
    proc = svc.procedure("fhir-determinism")
    svc.upload(proc, [photos.procedure_photo("cecum")])
    first, second = _fhir(svc, proc).json(), _fhir(svc, proc).json()

    def ids(body: dict) -> list:
        entries = body["entry"]
        refs = [r["reference"] for r in entries[0]["resource"]["result"]]
        return [body["id"], refs] + [(e["fullUrl"], e["resource"]["id"]) for e in entries]

    assert ids(first) == ids(second)
    assert len({e["fullUrl"] for e in first["entry"]}) == len(first["entry"])
    # another standard gives other ids
    other = _fhir(svc, proc, standard="esge-colonoscopy-9")
    assert other.status_code == 200
    assert {e["fullUrl"] for e in other.json()["entry"]}.isdisjoint(
        {e["fullUrl"] for e in first["entry"]}
    )


def test_fhir_problems_and_scopes(svc: Service) -> None:
    proc = svc.procedure("fhir-problems")
    url = f"/v1/procedures/{proc}/documentation/fhir"
    r = svc.client.get(f"/v1/procedures/{NIL}/documentation/fhir", headers=svc.headers["search"])
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = _fhir(svc, proc, standard="no-such")
    assert r.status_code == 404 and r.json()["code"] == "standard_not_found"
    r = _fhir(svc, proc, standard="landmarks-upper-gi")
    assert r.status_code == 422 and r.json()["code"] == "standard_kind_mismatch"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _fhir(svc, proc, standard="x" * 65).status_code == 422
    r = svc.client.get(url)
    assert r.status_code == 401 and r.json()["code"] == "missing_key"
    r = svc.client.get(url, headers=svc.headers["ingest"])
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    # an empty procedure: every requirement missing, a valid final report
    r = _fhir(svc, proc)
    _, report, observations = _parts(r.json())
    assert report.status == "final" and report.effectiveDateTime is None
    assert report.subject is None and all(o.subject is None for o in observations)
    assert {o.valueCodeableConcept.coding[0].code for o in observations} == {"missing"}
    assert report.conclusion.startswith("0 of ")


def test_builder_marks_uncertain_preliminary_and_names_the_video() -> None:
    """Builder alone: an accepted video still, an uncertain candidate and a missing item."""
    reqs = [
        {"id": i, "name": i.title(), "labels": [i], "verified": True}
        for i in ("cecum", "ileum", "appendix")
    ]
    std = Standard.model_validate(
        {
            "id": "test-std",
            "name": "Test",
            "procedure_kind": "colonoscopy",
            "sources": [{"citation": "A test citation"}],
            "requirements": reqs,
        }
    )
    video = uuid.uuid4()
    pick = VideoPick("cecum", "accepted", 1234, 0.9, video)
    results = (
        RequirementResult(
            std.requirements[0],
            "documented",
            Evidence(1, "cecum", 0.9, "documented", "video", pick=pick),
        ),
        RequirementResult(
            std.requirements[1],
            "uncertain",
            Evidence(2, "ileum", 0.7, "uncertain", "predicted", 0.8),
            Reason("below_threshold", "Score 0.70 is below the threshold 0.80."),
        ),
        RequirementResult(std.requirements[2], "missing", None, Reason("no_candidate", "None.")),
    )
    images = {1: SimpleNamespace(uid=uuid.UUID(int=1)), 2: SimpleNamespace(uid=uuid.UUID(int=2))}
    procedure = SimpleNamespace(id=uuid.UUID(int=9), performed_at=None)
    judged = ProcedureDocumentation(
        procedure,  # type: ignore[arg-type]
        DocumentationReport(std, results),
        images,  # type: ignore[arg-type]
        "model",
        True,
    )
    now = datetime(2026, 1, 6, tzinfo=UTC)
    body = json.loads(fhir.documentation_bundle(judged, now).model_dump_json())
    assert body == json.loads(fhir.documentation_bundle(judged, now).model_dump_json())
    _, report, (cecum, ileum, appendix) = _parts(body)
    assert report.status == "preliminary"
    assert report.conclusion.startswith("1 of 3 required landmarks documented")
    assert [m.link.identifier.value for m in report.media] == [str(uuid.UUID(int=1))]
    assert (cecum.status, ileum.status, appendix.status) == ("final", "preliminary", "final")
    assert _component(cecum, "video").valueReference.identifier.value == str(video)
    assert float(_component(cecum, "video-time").valueQuantity.value) == 1234
    assert _component(cecum, "evidence-source").valueCodeableConcept.coding[0].code == "video"
    assert float(_component(ileum, "threshold").valueQuantity.value) == 0.8
    assert _component(ileum, "reason").valueCodeableConcept.coding[0].code == "below_threshold"
    assert not appendix.derivedFrom and _component(appendix, "score") is None
