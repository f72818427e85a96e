"""The jobs table as a lease: claim, heartbeat, commit progress with the cursor, finish.

A run claims a job by stamping `started_at`; that stamp is the run's fencing token. Every
progress update is `UPDATE ... WHERE id = :id AND started_at = :token` inside the caller's
transaction, so a chunk's rows and the cursor commit together, and a run that lost its lease
(another process resumed the job after its heartbeat went stale) can never write again.
Per-item errors and run bookkeeping live in reserved keys of `params` ("errors", "run").
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Job
from app.db.types import utcnow

ACTIVE = ("pending", "running")
RESUMABLE = ("pending", "running", "interrupted", "failed")
MAX_ERRORS = 100  # the stored list is bounded; `failed` keeps the full count
STALE_AFTER_S = 30.0
HEARTBEAT_S = 5.0


class LeaseLostError(RuntimeError):
    """Another run owns the job now; this run must stop without writing."""


class JobBusyError(RuntimeError):
    """The job is running elsewhere (fresh heartbeat) or already finished."""


@dataclass(frozen=True)
class Lease:
    """This run's claim on a job."""

    job_id: uuid.UUID
    token: datetime
    cursor: int | None


def create(
    session: Session, kind: str, params: dict[str, Any], *, model_id: str | None = None
) -> Job:
    """A pending job (flushed, not committed)."""
    job = Job(kind=kind, status="pending", params=dict(params), model_id=model_id)
    session.add(job)
    session.flush()
    return job


def get(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, *, kind: str | None = None, limit: int = 50) -> list[Job]:
    """Newest first."""
    q = sa.select(Job).order_by(Job.created_at.desc()).limit(limit)
    if kind is not None:
        q = q.where(Job.kind == kind)
    return list(session.scalars(q))


def owner() -> str:
    """This process, as stored in the job while it runs (host:pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_dead(job: Job) -> bool:
    """True when the owning process ran on this host and no longer exists (e.g. SIGKILL)."""
    host, _, pid = str((job.params or {}).get("run", {}).get("owner", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def is_stale(job: Job, now: datetime | None = None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """A running job whose process died (same host) or whose heartbeat stopped."""
    if _owner_dead(job):
        return True
    beat = job.heartbeat_at or job.started_at
    return beat is None or (now or utcnow()) - beat > timedelta(seconds=stale_after_s)


def live(job: Job, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Pending, or running with a live owner."""
    return job.status == "pending" or (
        job.status == "running" and not is_stale(job, stale_after_s=stale_after_s)
    )


def claim(
    sessions: sessionmaker[Session], job_id: uuid.UUID, stale_after_s: float = STALE_AFTER_S
) -> Lease:
    """Take the job for this run; raises JobBusyError if a live run holds it or it is done.

    Optimistic: the UPDATE matches the status and stamp just read, so of two processes
    claiming at once exactly one wins.
    """
    now = utcnow()
    with sessions.begin() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise KeyError(f"no job {job_id}")
        claimable = job.status in ("pending", "interrupted", "failed") or (
            job.status == "running" and is_stale(job, now, stale_after_s)
        )
        if not claimable:
            raise JobBusyError(f"job {job_id} is {job.status} (running elsewhere or finished)")
        params = dict(job.params)
        runs = int(params.get("run", {}).get("runs", 0)) + 1
        params["run"] = {"done0": job.done + job.failed, "runs": runs, "owner": owner()}
        same_stamp = (
            Job.started_at.is_(None) if job.started_at is None else Job.started_at == job.started_at
        )
        res = session.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.status == job.status, same_stamp)
            .values(status="running", started_at=now, heartbeat_at=now, error=None, params=params)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:
            raise JobBusyError(f"job {job_id} was claimed by another run just now")
        return Lease(job_id, now, job.cursor)


def _owned(lease: Lease) -> sa.Update:
    return sa.update(Job).where(Job.id == lease.job_id, Job.started_at == lease.token)


def commit_progress(
    session: Session,
    lease: Lease,
    *,
    cursor: int | None,
    done: int,
    failed: int,
    errors: list[dict[str, str]] | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    """Advance the cursor and counts in the caller's transaction (fenced by the lease).

    `errors` extend the bounded per-item list; `counts` add to named counters (e.g. duplicates).
    """
    values: dict[str, Any] = {
        "done": Job.done + done,
        "failed": Job.failed + failed,
        "heartbeat_at": utcnow(),
    }
    if cursor is not None:
        values["cursor"] = cursor
    if errors or counts:
        params = dict(session.scalar(sa.select(Job.params).where(Job.id == lease.job_id)) or {})
        params["errors"] = (list(params.get("errors", [])) + list(errors or []))[:MAX_ERRORS]
        totals = dict(params.get("counts", {}))
        for name, n in (counts or {}).items():
            totals[name] = int(totals.get(name, 0)) + n
        params["counts"] = totals
        values["params"] = params
    res = session.execute(
        _owned(lease).values(**values).execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        raise LeaseLostError(f"job {lease.job_id} was taken over by another run")


def set_total(sessions: sessionmaker[Session], lease: Lease, total: int) -> None:
    with sessions.begin() as session:
        session.execute(
            _owned(lease).values(total=total).execution_options(synchronize_session=False)
        )


def beat(sessions: sessionmaker[Session], lease: Lease) -> bool:
    """Refresh the heartbeat; False when the lease is lost."""
    with sessions.begin() as session:
        res = session.execute(
            _owned(lease).values(heartbeat_at=utcnow()).execution_options(synchronize_session=False)
        )
        return res.rowcount == 1


def finish(session: Session, lease: Lease, status: str, error: str | None = None) -> None:
    """Mark the run's end in the caller's transaction (e.g. together with the model flip)."""
    res = session.execute(
        _owned(lease)
        .values(status=status, error=error, finished_at=utcnow(), heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        raise LeaseLostError(f"job {lease.job_id} was taken over by another run")


class Heartbeat:
    """A thread that beats every `interval_s` while a run works; sets `lost` if fenced out."""

    def __init__(self, sessions: sessionmaker[Session], lease: Lease, interval_s: float) -> None:
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._args = (sessions, lease)
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), daemon=True)

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                if not beat(*self._args):
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001, S112 - a DB hiccup; the next beat retries
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


CANCEL_AT_ONCE = ("pending", "interrupted", "failed")


def request_cancel(session: Session, job_id: uuid.UUID) -> Job:
    """Cancel a job (flushed, not committed); raises KeyError when there is none.

    A job no run holds (pending, interrupted, failed, or running with a dead owner) is
    "cancelled" at once; a live run gets params["cancel"] and stops at its next check
    (`cancel_requested`), so its last chunk commits whole. Completed and cancelled jobs are
    returned unchanged.
    """
    for _ in range(3):  # a claim may race us: re-read and decide again
        job = session.get(Job, job_id, populate_existing=True)
        if job is None:
            raise KeyError(f"no job {job_id}")
        if job.status in ("completed", "cancelled"):
            return job
        if job.status in CANCEL_AT_ONCE or is_stale(job):
            same_stamp = (
                Job.started_at.is_(None)
                if job.started_at is None
                else Job.started_at == job.started_at
            )
            res = session.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.status == job.status, same_stamp)
                .values(status="cancelled", finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if res.rowcount == 1:
                session.expire(job)
                return job
            continue
        params = dict(job.params or {})
        params["cancel"] = True
        job.params = params
        session.flush()
        return job
    raise JobBusyError(f"job {job_id} changed state while being cancelled; try again")


def cancel_requested(session: Session, lease: Lease) -> bool:
    """True when the run should stop: cancel asked, or the job was cancelled under it."""
    row = session.execute(
        sa.select(Job.status, Job.params).where(Job.id == lease.job_id)
    ).one_or_none()
    if row is None:
        return True
    status, params = row
    return status == "cancelled" or bool((params or {}).get("cancel"))


def describe(job: Job, now: datetime | None = None) -> dict[str, Any]:
    """Status, counts, rate (items/s of the current run) and ETA, safe to return to admins."""
    now = now or utcnow()
    processed = job.done + job.failed
    rate = None
    if job.started_at is not None:
        end = job.finished_at or (job.heartbeat_at if job.status != "running" else now)
        elapsed = ((end or now) - job.started_at).total_seconds()
        done0 = int((job.params or {}).get("run", {}).get("done0", 0))
        if elapsed > 0:
            rate = (processed - done0) / elapsed
    left = max(job.total - processed, 0)
    eta = left / rate if rate and job.status == "running" else None
    params = job.params or {}
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "model_id": job.model_id,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "cursor": job.cursor,
        "rate": rate,
        "eta_s": eta,
        "stale": job.status == "running" and is_stale(job, now),
        "errors": list(params.get("errors", [])),
        "params": {k: v for k, v in params.items() if k not in ("errors", "run")},
        "error": job.error,
        "heartbeat_at": job.heartbeat_at,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
