"""Jobs run inside the server: one thread per job, stopped cleanly at shutdown.

A stopped job is marked "interrupted" and, with ENDOSEEK_JOBS_AUTO_RESUME, resumed at the
next start together with jobs whose process died (`resume_interrupted`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from app.db.models import Job
from app.services import bulk_import, jobs, reindex
from app.services.job_exec import JobContext, Progress, resumable_jobs
from app.services.runtime import Runtime

log = logging.getLogger(__name__)
VIDEO_ANALYSIS = "video_analysis"


def _video_analysis(ctx: JobContext, job_id: uuid.UUID, progress: Progress | None = None) -> str:
    """Imported on first use: app.services must not import app.video (and PyAV) at start."""
    from app.video.analysis import run_video_analysis

    return run_video_analysis(ctx, job_id, progress)


RUNNERS: dict[str, Callable[..., str]] = {
    reindex.KIND: reindex.run_reindex,
    bulk_import.KIND: bulk_import.run_import,
    VIDEO_ANALYSIS: _video_analysis,
}
# kinds whose queued jobs always run at start (an acknowledged upload must not wait for an
# operator), even without ENDOSEEK_JOBS_AUTO_RESUME
ALWAYS_RESUME = (VIDEO_ANALYSIS,)
# kinds whose runs check jobs.cancel_requested between chunks (a running one can be cancelled)
CANCEL_WHILE_RUNNING = (VIDEO_ANALYSIS,)
UNCLAIMED_OR_DEAD = ("pending", "running", "interrupted")  # running: only with a dead owner
_OWNER_LOCK = threading.Lock()


class JobThreads:
    """Runs jobs in background threads of the server process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.stop = threading.Event()
        self._threads: dict[uuid.UUID, threading.Thread] = {}
        self._lock = threading.Lock()

    def context(self) -> JobContext:
        ctx = JobContext.from_runtime(self.rt)
        ctx.stop = self.stop
        return ctx

    def start(self, job_id: uuid.UUID, kind: str) -> threading.Thread:
        """Run the job in a new thread (claiming happens in the thread)."""
        runner = RUNNERS[kind]

        def target() -> None:
            try:
                runner(self.context(), job_id)
            except jobs.JobBusyError as exc:
                log.warning("job %s not started: %s", job_id, exc)
            except Exception:  # noqa: BLE001 - recorded in the job row by run_job
                log.exception("job %s ended with an error", job_id)

        thread = threading.Thread(target=target, name=f"job-{str(job_id)[:8]}", daemon=True)
        with self._lock:
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
            self._threads[job_id] = thread
        thread.start()
        return thread

    def running(self, job_id: uuid.UUID) -> bool:
        with self._lock:
            thread = self._threads.get(job_id)
        return thread is not None and thread.is_alive()

    def join(self, job_id: uuid.UUID, timeout_s: float | None = None) -> bool:
        """Wait for the job's thread in this process to end; True when it has (or none ran)."""
        with self._lock:
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout_s)
        return thread is None or not thread.is_alive()

    def resume_interrupted(self, stale_after_s: float = jobs.STALE_AFTER_S) -> list[uuid.UUID]:
        """Start every interrupted job and every running job whose process died."""
        with self.rt.sessions() as session:
            todo = [
                (j.id, j.kind) for j in resumable_jobs(session, stale_after_s) if j.kind in RUNNERS
            ]
        for job_id, kind in todo:
            self.start(job_id, kind)
        return [job_id for job_id, _ in todo]

    def resume_kinds(
        self, kinds: Sequence[str] = ALWAYS_RESUME, stale_after_s: float = jobs.STALE_AFTER_S
    ) -> list[uuid.UUID]:
        """Start the jobs of `kinds` no live run holds: pending (never claimed: the process
        died between the commit and the start), interrupted, or running with a dead owner.
        A job another process claims first is skipped by the claim (JobBusyError)."""
        with self.rt.sessions() as session:
            rows = session.scalars(
                sa.select(Job)
                .where(Job.kind.in_(list(kinds)), Job.status.in_(UNCLAIMED_OR_DEAD))
                .order_by(Job.created_at)
            )
            todo = [
                (j.id, j.kind)
                for j in rows
                if j.status != "running" or jobs.is_stale(j, stale_after_s=stale_after_s)
            ]
        todo = [(job_id, kind) for job_id, kind in todo if not self.running(job_id)]
        for job_id, kind in todo:
            self.start(job_id, kind)
        return [job_id for job_id, _ in todo]

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Ask every job to stop after its current batch and wait for them."""
        self.stop.set()
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout=timeout_s)


def threads_of(rt: Runtime) -> JobThreads:
    """The runtime's job threads (one per runtime, made on first use; a new one after a
    shutdown, so a restarted app starts jobs again)."""
    with _OWNER_LOCK:
        found: JobThreads | None = getattr(rt, "_job_threads", None)
        if found is None or found.stop.is_set():
            found = JobThreads(rt)
            rt._job_threads = found  # type: ignore[attr-defined]
        return found
