"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from app.api.deps import AdminKey, RuntimeDep
from app.dicom.spool import Spool
from app.services import faults
from app.services.errors import ProblemError
from app.services.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness (no key needed)")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready", summary="Readiness: database reachable, model and index loaded, space to store"
)
def ready(rt: RuntimeDep) -> dict[str, object]:
    """Every check runs afresh on each call (nothing cached): a fault that passed is gone."""
    checks = {"database": False, "model": rt.embedder is not None, "index": False, "storage": False}
    reasons: dict[str, str] = {}
    try:
        with rt.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = True
    except sa.exc.SQLAlchemyError as exc:
        reasons["database"] = _first_line(exc)
    checks["index"] = rt.index is not None and rt.index.loaded
    low = faults.low_space(rt.settings)
    checks["storage"] = not low
    if low:
        reasons["storage"] = "; ".join(low)
    if not checks["model"]:
        reasons["model"] = "no model loaded"
    if not checks["index"]:
        reasons["index"] = "index not loaded"
    if not all(checks.values()):
        failed = ", ".join(k for k, ok in checks.items() if not ok)
        extra: dict[str, object] = {"checks": checks, "reasons": reasons}
        if not checks["database"]:
            extra["retry_after"] = rt.settings.db_retry_after_s
        raise ProblemError(503, "not_ready", f"Not ready: {failed}.", **extra)
    return {
        "status": "ready",
        "checks": checks,
        "vectors": len(rt.index or ()),
        # informational, never a failed check: acknowledged C-STORE instances not yet stored
        # (pending) and refused ones kept for an operator (failed/; see docs/dicom.md)
        "dicom_spool": _spool(rt).counts(),
    }


def _spool(rt: Runtime) -> Spool:
    return Spool(rt.settings.dicom_spool_dir)


def _first_line(exc: Exception) -> str:
    """The error's class and first message line (the rest repeats SQL and links)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@router.get(
    "/metrics",
    summary="Prometheus metrics (scope admin)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(rt: RuntimeDep, _: AdminKey) -> Response:
    for state, n in _spool(rt).counts().items():
        rt.metrics.spool_files.labels(state).set(n)
    return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
