"""Batch jobs over REST (scope admin): list, show, start a re-index, resume, cancel."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from app.api.deps import AdminKey, RuntimeDep, SessionDep
from app.services import audit, jobs, reindex
from app.services.errors import ProblemError
from app.services.job_threads import CANCEL_WHILE_RUNNING, JobThreads, threads_of

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobOut(BaseModel):
    """A job's progress; `rate` is items/s of the current run, `eta_s` seconds left."""

    id: uuid.UUID
    kind: str
    status: str
    model_id: str | None
    total: int
    done: int
    failed: int
    cursor: int | None
    rate: float | None
    eta_s: float | None
    stale: bool
    errors: list[dict[str, str]]
    params: dict[str, Any]
    error: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ReindexIn(BaseModel):
    """A bundle directory on the server's file system, and pipeline sizes."""

    bundle: str = Field(examples=["/models/dual-dinov2-gastronet"])
    batch: int = Field(64, ge=1, le=4096)
    workers: int = Field(2, ge=1, le=64)
    chunk: int = Field(256, ge=1, le=100_000)


def _threads(request: Request, rt: RuntimeDep) -> JobThreads:
    return threads_of(rt)


@router.get("", summary="Batch jobs, newest first")
def list_jobs(
    session: SessionDep, _: AdminKey, limit: int = 50, kind: str | None = None
) -> list[JobOut]:
    rows = jobs.list_jobs(session, kind=kind, limit=min(max(limit, 1), 500))
    return [JobOut(**jobs.describe(j)) for j in rows]


@router.get("/{job_id}", summary="One job: status, counts, rate, ETA, cursor, errors")
def get_job(job_id: uuid.UUID, session: SessionDep, _: AdminKey) -> JobOut:
    job = jobs.get(session, job_id)
    if job is None:
        raise ProblemError(404, "job_not_found", "No job with this id.")
    return JobOut(**jobs.describe(job))


@router.post("/reindex", status_code=status.HTTP_202_ACCEPTED, summary="Re-index with a bundle")
def start_reindex(
    body: ReindexIn, request: Request, rt: RuntimeDep, session: SessionDep, key: AdminKey
) -> JobOut:
    """Embed every photo with the bundle, then flip the active model; searches keep working."""
    threads = _threads(request, rt)
    try:
        job = reindex.start_reindex(
            threads.context(), body.bundle, batch=body.batch, workers=body.workers, chunk=body.chunk
        )
    except (OSError, ValueError) as exc:
        code = "reindex_refused" if isinstance(exc, reindex.ReindexRefusedError) else "bad_bundle"
        raise ProblemError(409 if code == "reindex_refused" else 422, code, str(exc)) from exc
    audit.record(session, key.key_id, "job.reindex", str(job.id), {"model_id": job.model_id})
    session.commit()
    threads.start(job.id, job.kind)
    return JobOut(**jobs.describe(job))


@router.post("/{job_id}/resume", status_code=status.HTTP_202_ACCEPTED, summary="Resume a job")
def resume_job(
    job_id: uuid.UUID, request: Request, rt: RuntimeDep, session: SessionDep, key: AdminKey
) -> JobOut:
    job = jobs.get(session, job_id)
    if job is None:
        raise ProblemError(404, "job_not_found", "No job with this id.")
    if job.status in ("completed", "cancelled") or jobs.live(job) and job.status == "running":
        raise ProblemError(409, "job_not_resumable", f"The job is {job.status}.")
    audit.record(session, key.key_id, "job.resume", str(job.id))
    session.commit()
    _threads(request, rt).start(job.id, job.kind)
    return JobOut(**jobs.describe(job))


@router.post("/{job_id}/cancel", summary="Cancel a job (a running one stops after its chunk)")
def cancel_job(job_id: uuid.UUID, session: SessionDep, key: AdminKey) -> JobOut:
    """Pending, interrupted or failed jobs are cancelled at once; a running video analysis
    gets the request and stops at its next check, keeping what it committed. 409 when
    completed, and for a running re-index or import (they never check for a cancel)."""
    job = jobs.get(session, job_id)
    if job is None:
        raise ProblemError(404, "job_not_found", "No job with this id.")
    if job.status == "completed":
        raise ProblemError(409, "job_not_cancellable", "The job has completed.")
    if job.status == "running" and jobs.live(job) and job.kind not in CANCEL_WHILE_RUNNING:
        # re-index and import never check for a cancel: a flag they ignore would only mislead
        raise ProblemError(
            409,
            "job_not_cancellable",
            f"A running {job.kind} job cannot be cancelled; it stops at shutdown (interrupted, "
            "resumable) or runs to the end.",
        )
    try:
        job = jobs.request_cancel(session, job_id)
    except jobs.JobBusyError as exc:
        raise ProblemError(409, "job_busy", str(exc)) from exc
    audit.record(session, key.key_id, "job.cancel", str(job.id))
    session.commit()
    return JobOut(**jobs.describe(job))
