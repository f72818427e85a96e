"""The video analysis job: sampled frames -> quality gate -> model -> landmark votes -> picks.

Resumable like re-index and import (app.services.job_exec.run_job): frames are analysed in
chunks of `video_chunk_s` of video time, and each chunk's VideoFrame rows commit in ONE
transaction with the job's cursor (the chunk's last grid index), fenced by the lease. A run
killed at any point resumes at the grid index after the cursor; FrameSampler yields exactly
the frames a full run yields from there, so the per-frame table is the same as without the
kill. Between chunks the job honours the stop event (shutdown: "interrupted", resumable) and
a cancel request (Video and job "cancelled").

Per frame (in the runtime's decode pool, so the sequential decoder never waits for it): the
weight-free QualityGate; a kept frame gets the field-of-view mask the photos get
(embedder.fov.apply_fov_mask, so burned-in text never reaches the model), the serving model's
preprocessing and a place in the micro-batcher (the serving model, batched with requests).
Per chunk: a kNN vote over the live reference gallery within the procedure kind's reach,
the same vote the documentation uses for photos; the top 3 shares are stored, rounded to 4
decimals (the last bits of a vector can differ between batch sizes; the stored shares are
what the end phase reads, so a resumed run and a full run pick from the same numbers).

The end phase reads the whole per-frame table (never in-memory state, so it is the same after
a restart): app.video.timeline smooths and picks per requirement of the kind's default
standard, each pick is re-extracted at full size (decode.frame_at), encoded as JPEG q95 and
stored through IngestService (the one ingest path: FOV mask, dedup, vector, index, the
documentation hook) with its VideoImage row in the same transaction; segment vectors are
pooled from the kept frames' vectors. One transaction then stores the segments, drops the
frame vectors, marks the video "done" with its summary and completes the job. Every step is
idempotent (picks unique per (video, requirement, rank), segments per (video, model, start)),
so a crash half-way through the end phase finishes cleanly on the next run. The original is
then removed by the retention rule (store.purge_expired), which a start-up also runs.
"""

from __future__ import annotations

import io
import logging
import math
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
import numpy as np
import sqlalchemy as sa
import torch
from PIL import Image as PILImage
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import Job, Procedure, Video, VideoFrame, VideoImage, VideoSegment
from app.db.types import utcnow
from app.documentation.gallery import ReferenceGallery
from app.documentation.service import documentation_of
from app.documentation.vote import VoteConfig, ranked_within
from app.services import jobs, vectors
from app.services.ingest import IngestService, Serving, Upload
from app.services.job_exec import JobContext, Progress, run_job
from app.services.runtime import Runtime
from app.video import timeline
from app.video.decode import FrameSampler, SampledFrame, frame_at
from app.video.quality import REASONS, QualityGate, QualityVerdict
from app.video.segments import segment_index_of
from embedder.fov import apply_fov_mask

log = logging.getLogger(__name__)
KIND = "video_analysis"
TOP_LABELS = 3  # shares kept per frame (the UI's bands and the picks need the leaders only)
SHARE_DECIMALS = 4
FEATURE_DECIMALS = 4
# frames decoded ahead of their answers: enough for full model batches, few enough that the
# decode pool (shared with photo uploads) never queues more than ~0.1 s of video work
MAX_IN_FLIGHT = 16
PICK_JPEG_QUALITY = 95


@dataclass(frozen=True)
class _Analysed:
    """One sampled frame after the gate (and, if kept, the model)."""

    index: int
    t_ms: int
    verdict: QualityVerdict
    vector: np.ndarray | None


@dataclass(frozen=True)
class _Vote:
    """The gallery and reach frames are voted against (None: no reference photo yet)."""

    gallery: ReferenceGallery | None
    config: VoteConfig
    excluded: frozenset[str]

    def top(self, vecs: np.ndarray) -> list[list[list[Any]]]:
        """Per row of `vecs`: [[label, share], ...] best first, within the reach."""
        if self.gallery is None or len(vecs) == 0:
            return [[] for _ in range(len(vecs))]
        counts = self.gallery.counts
        wide = self.config.k + sum(n for lab, n in counts.items() if lab in self.excluded)
        out = []
        for neighbours in self.gallery.neighbours(vecs, wide):
            votes = ranked_within(neighbours, self.excluded, self.config)[:TOP_LABELS]
            out.append([[lab, round(float(s), SHARE_DECIMALS)] for lab, s in votes])
        return out


def run_video_analysis(ctx: JobContext, job_id: uuid.UUID, progress: Progress | None = None) -> str:
    """Run (or resume) a video analysis job; returns the final status.

    Needs a started Runtime (model, batcher, index, ingest): the server's, or one built here
    for the CLI (`ctx.runtime` None), stopped again at the end.
    """
    rt, owned = ctx.runtime, False
    if rt is None:
        rt, owned = _start_runtime(ctx), True
    try:
        return run_job(ctx, job_id, lambda lease: _Run(ctx, rt, lease, progress).body())
    finally:
        if owned:
            rt.stop()


def _start_runtime(ctx: JobContext) -> Runtime:
    from app.documentation.hooks import get_ingest_hooks

    rt = Runtime.create(ctx.settings)
    rt.start()
    rt.hooks.extend(get_ingest_hooks(rt))
    return rt


def expected_frames(duration_s: float, rate: float) -> int:
    """Grid points of a video (the job's total; the real count may differ by one or two)."""
    return max(1, math.ceil(duration_s * rate))


class _Run:
    """One run of one job (a resumed job is a new run from the cursor)."""

    def __init__(
        self, ctx: JobContext, rt: Runtime, lease: jobs.Lease, progress: Progress | None
    ) -> None:
        self.ctx, self.rt, self.lease, self.progress = ctx, rt, lease, progress
        self.settings = rt.settings
        self.serving = Serving.of(rt)
        self.gate = QualityGate()
        self.rate = self.settings.video_analysis_fps
        self.chunk_frames = max(1, round(self.settings.video_chunk_s * self.rate))

    # -- the job ---------------------------------------------------------------------------

    def body(self) -> str:
        video_id = self._start()
        try:
            return self._analyse(video_id)
        except jobs.LeaseLostError:
            raise
        except Exception:
            self._mark_failed(video_id)
            raise

    def _start(self) -> uuid.UUID:
        """Mark the video analysing; a model other than the one its frames were embedded with
        (a re-index flipped it between runs) restarts the per-frame table from zero."""
        model_id = self.serving.embedder.bundle_id
        with self.ctx.sessions.begin() as session:
            job = session.get(Job, self.lease.job_id)
            assert job is not None
            video = session.get(Video, uuid.UUID(str(job.params["video_id"])))
            if video is None:
                raise LookupError(f"video {job.params['video_id']} no longer exists")
            self.done = job.done
            if video.model_id not in (None, model_id):
                log.warning("video %s: model changed; its analysis restarts", video.id)
                session.execute(sa.delete(VideoFrame).where(VideoFrame.video_id == video.id))
                self._reset(session)
                self.done = 0
            video.model_id = model_id
            video.status = "analysing"
            self.total = expected_frames(video.duration_s, self.rate)
            self._fenced(session, total=self.total)
            return video.id

    def _fenced(self, session: Session, **values: Any) -> None:
        res = session.execute(
            sa.update(Job)
            .where(Job.id == self.lease.job_id, Job.started_at == self.lease.token)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:
            raise jobs.LeaseLostError(f"job {self.lease.job_id} was taken over by another run")

    def _reset(self, session: Session) -> None:
        self._fenced(session, cursor=None, done=0, failed=0)
        self.lease = jobs.Lease(self.lease.job_id, self.lease.token, None)

    def _mark_failed(self, video_id: uuid.UUID) -> None:
        try:
            with self.ctx.sessions.begin() as session:
                video = session.get(Video, video_id)
                if video is not None and video.status == "analysing":
                    video.status = "failed"
        except Exception:  # noqa: BLE001 - the job row records the real error
            log.exception("video %s: could not mark it failed", video_id)

    def _analyse(self, video_id: uuid.UUID) -> str:
        with self.ctx.sessions() as session:
            video = session.get(Video, video_id)
            assert video is not None
            path = self._path(video)
            kind = session.scalar(
                sa.select(Procedure.kind).where(Procedure.id == video.procedure_id)
            )
        start = 0 if self.lease.cursor is None else self.lease.cursor + 1
        status = self._frames(video_id, path, kind or "other", start)
        if status != "finish":
            return status
        return _EndPhase(self, video_id, path, kind or "other").run()

    def _path(self, video: Video) -> Path:
        if video.file_key is None:
            raise FileNotFoundError(f"video {video.id}: the original is no longer kept")
        return Path(self.settings.video_dir) / video.file_key

    # -- frames, chunk by chunk ----------------------------------------------------------

    def _frames(self, video_id: uuid.UUID, path: Path, kind: str, start: int) -> str:
        """Analyse from grid index `start`; "finish" when the stream is exhausted."""
        sampler = FrameSampler(
            path, self.rate, start_index=start, max_side=self.settings.video_analysis_side
        )
        pending: deque[tuple[int, int, Future[tuple[QualityVerdict, Future | None]]]] = deque()
        ready: list[_Analysed] = []
        current: int | None = None
        for frame in sampler:
            if self.ctx.stop.is_set():
                return "interrupted"  # the chunk in hand is dropped: the next run redoes it
            chunk = frame.index // self.chunk_frames
            if current is not None and chunk != current:
                ready += [_resolve(p) for p in pending]
                pending.clear()
                status = self._commit(video_id, kind, ready, None)
                ready = []
                if status is not None:
                    return status
            current = chunk
            pending.append((frame.index, frame.t_ms, self._submit(frame)))
            if len(pending) > MAX_IN_FLIGHT:
                ready.append(_resolve(pending.popleft()))
        if self.ctx.stop.is_set():
            return "interrupted"
        ready += [_resolve(p) for p in pending]
        status = self._commit(video_id, kind, ready, sampler.truncated)
        return status or "finish"

    def _submit(self, frame: SampledFrame) -> Future[tuple[QualityVerdict, Future | None]]:
        assert self.rt.decode_pool is not None
        return self.rt.decode_pool.submit(
            _prepare, self.gate, self.serving, self.settings.fov_mask, frame.image
        )

    def _commit(
        self, video_id: uuid.UUID, kind: str, rows: list[_Analysed], truncated: bool | None
    ) -> str | None:
        """One transaction: the chunk's rows and the cursor (and, at the stream's end, the
        truncated flag). Then a cancel request ends the job: "cancelled" (else None)."""
        kept = [r for r in rows if r.vector is not None]
        vote = self._vote(kind)
        tops = iter(vote.top(np.stack([r.vector for r in kept]) if kept else np.zeros((0, 1))))
        values = []
        for r in rows:
            values.append(
                {
                    "video_id": video_id,
                    "index": r.index,
                    "t_ms": r.t_ms,
                    "ok": r.verdict.ok,
                    "reason": r.verdict.reason,
                    "quality": round(float(r.verdict.score), FEATURE_DECIMALS),
                    "features": {
                        k: round(float(v), FEATURE_DECIMALS) for k, v in r.verdict.features.items()
                    },
                    "labels": next(tops) if r.vector is not None else [],
                    "vector": None if r.vector is None else vectors.to_bytes(r.vector),
                }
            )
        with self.ctx.sessions.begin() as session:
            if values:
                session.execute(sa.insert(VideoFrame), values)
            if truncated is not None:
                video = session.get(Video, video_id)
                assert video is not None
                was = bool((video.analysis or {}).get("truncated"))
                video.analysis = {**(video.analysis or {}), "truncated": was or truncated}
            cursor = rows[-1].index if rows else None
            jobs.commit_progress(session, self.lease, cursor=cursor, done=len(rows), failed=0)
        self.done += len(rows)
        if self.progress is not None:
            self.progress(self.done, 0, max(self.total, self.done))
        with self.ctx.sessions() as session:
            if jobs.cancel_requested(session, self.lease):
                self._cancel(video_id)
                return "cancelled"
        return None

    def _vote(self, kind: str) -> _Vote:
        """The live gallery of the serving model (labels set meanwhile count from now on)."""
        docs = documentation_of(self.rt)
        emb = self.serving.embedder
        with self.ctx.sessions() as session:
            predictor = docs.predictor(session, emb.bundle_id, emb.dim)
        if predictor is None:
            return _Vote(None, VoteConfig(), frozenset())
        return _Vote(predictor.gallery, predictor.vote_config, docs.reach(kind).excluded)

    def _cancel(self, video_id: uuid.UUID) -> None:
        """Video and job "cancelled" in one transaction; the frame table stays (no vectors)."""
        with self.ctx.sessions.begin() as session:
            session.execute(
                sa.update(VideoFrame).where(VideoFrame.video_id == video_id).values(vector=None)
            )
            video = session.get(Video, video_id)
            assert video is not None
            video.status = "cancelled"
            video.finished_at = utcnow()
            video.retain_until = self.retain_until()
            jobs.finish(session, self.lease, "cancelled")
        _purge(self.rt)

    def retain_until(self) -> datetime:
        """When the original goes: now + retention when kept (0 days: now), else now."""
        s = self.settings
        days = s.video_retention_days if s.video_keep_original else 0.0
        return utcnow() + timedelta(days=days)


def _prepare(
    gate: QualityGate, serving: Serving, fov: bool, rgb: np.ndarray
) -> tuple[QualityVerdict, Future | None]:
    """Runs in the decode pool: the gate, then (kept frames) mask, preprocess, queue."""
    verdict = gate.judge(rgb)
    if not verdict.ok:
        return verdict, None
    image = PILImage.fromarray(rgb)
    if fov:
        image, _ = apply_fov_mask(image)
    tensor: torch.Tensor = serving.embedder.preprocess(image)
    return verdict, serving.batcher.submit(tensor)


def _resolve(item: tuple[int, int, Future[tuple[QualityVerdict, Future | None]]]) -> _Analysed:
    index, t_ms, fut = item
    verdict, vec = fut.result()
    vector = None if vec is None else np.asarray(vec.result(), dtype=np.float32)
    return _Analysed(index, t_ms, verdict, vector)


def _purge(rt: Runtime) -> None:
    """Remove originals past their retention (failures are retried at the next start)."""
    try:
        from app.video.store import purge_expired

        purge_expired(rt)
    except Exception:  # noqa: BLE001 - the file stays until the next purge
        log.exception("purging expired videos failed")


def _insert_ignore(
    session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """INSERT rows, skipping those whose unique `keys` exist (a re-run of the end phase)."""
    if not rows:
        return
    name = session.get_bind().dialect.name
    insert = postgresql.insert if name == "postgresql" else sqlite.insert
    session.execute(insert(table).on_conflict_do_nothing(index_elements=keys), rows)


class _EndPhase:
    """Smoothing, picks, stills, segments and the final transaction (idempotent)."""

    def __init__(self, run: _Run, video_id: uuid.UUID, path: Path, kind: str) -> None:
        self.run_, self.video_id, self.path, self.kind = run, video_id, path, kind
        self.rt, self.settings, self.ctx = run.rt, run.settings, run.ctx
        self.model_id = run.serving.embedder.bundle_id
        self.dim = run.serving.embedder.dim

    def run(self) -> str:
        frames, t_ms, vecs, reasons = self._table()
        standard = documentation_of(self.rt).standards.default_for(self.kind)
        requirements = {r.id: list(r.labels) for r in standard.requirements} if standard else {}
        picks = self._picks(frames, requirements)
        if self.ctx.stop.is_set():
            return "interrupted"
        self._store_stills(picks)
        segs = timeline.segments(
            t_ms,
            vecs,
            window_s=self.settings.video_segment_s,
            hop_s=self.settings.video_segment_hop_s,
        )
        summary = self._summary(frames, reasons, picks, segs, requirements, standard)
        self._final(segs, summary)
        segment_index_of(self.rt).add(self.model_id, self.dim)
        _purge(self.rt)
        return "completed"

    def _table(self) -> tuple[list[timeline.FrameScore], np.ndarray, np.ndarray, list[str | None]]:
        """The stored per-frame table: scores for the picks, kept vectors for the segments."""
        q = (
            sa.select(
                VideoFrame.index,
                VideoFrame.t_ms,
                VideoFrame.ok,
                VideoFrame.quality,
                VideoFrame.labels,
                VideoFrame.reason,
                VideoFrame.vector,
            )
            .where(VideoFrame.video_id == self.video_id)
            .order_by(VideoFrame.index)
        )
        frames, times, vecs, reasons = [], [], [], []
        with self.ctx.sessions() as session:
            for index, t, ok, quality, labels, reason, raw in session.execute(q):
                scores = {str(lab): float(s) for lab, s in (labels or [])}
                frames.append(timeline.FrameScore(index, t, bool(ok), float(quality), scores))
                reasons.append(reason)
                if ok and raw is not None:
                    times.append(t)
                    vecs.append(np.frombuffer(raw, dtype="<f4").astype(np.float32))
        matrix = np.stack(vecs) if vecs else np.zeros((0, self.dim), np.float32)
        return frames, np.asarray(times, dtype=np.int64), matrix, reasons

    def _picks(
        self, frames: list[timeline.FrameScore], requirements: dict[str, list[str]]
    ) -> list[timeline.Pick]:
        s = self.settings
        labels = sorted({lab for labs in requirements.values() for lab in labs})
        smoothed = timeline.smooth(
            frames, labels, window_s=max(s.video_smooth_s, 1.0), rate=s.video_analysis_fps
        )
        return timeline.pick_stills(
            frames,
            smoothed,
            requirements,
            k=s.video_picks_per_label,
            min_gap_s=s.video_pick_gap_s,
            min_score=s.video_min_pick_score,
        )

    def _store_stills(self, picks: Sequence[timeline.Pick]) -> None:
        """Each pick not stored yet: the full-size frame as JPEG through the ingest path, its
        VideoImage row in the ingest's transaction (a still equal to one already stored in
        the procedure, e.g. one frame picked for two requirements, gets its row after)."""
        with self.ctx.sessions() as session:
            done = set(
                session.execute(
                    sa.select(VideoImage.requirement, VideoImage.rank).where(
                        VideoImage.video_id == self.video_id
                    )
                ).all()
            )
            procedure_id = session.scalar(
                sa.select(Video.procedure_id).where(Video.id == self.video_id)
            )
        todo = [p for p in picks if (p.requirement, p.rank) not in done]
        per_request = self.settings.max_files_per_request
        for start in range(0, len(todo), per_request):
            batch = todo[start : start + per_request]
            uploads = [Upload(None, _jpeg(frame_at(self.path, p.t_ms))) for p in batch]

            def on_commit(session: Session, new: list[tuple[int, Any]], batch=batch) -> None:  # noqa: ANN001
                session.add_all(self._row(batch[i], image.id) for i, image in new)

            results = IngestService(self.rt).ingest(procedure_id, uploads, on_commit=on_commit)
            with self.ctx.sessions.begin() as session:
                rows = [
                    {
                        "image_id": r.image.id,
                        "video_id": self.video_id,
                        "requirement": p.requirement,
                        "label": p.label,
                        "t_ms": p.t_ms,
                        "score": p.score,
                        "quality": p.quality,
                        "rank": p.rank,
                        "review": "needs_review",
                        "created_at": utcnow(),
                    }
                    for p, r in zip(batch, results, strict=True)
                ]
                _insert_ignore(session, VideoImage, rows, ["video_id", "requirement", "rank"])

    def _row(self, pick: timeline.Pick, image_id: int) -> VideoImage:
        return VideoImage(
            image_id=image_id,
            video_id=self.video_id,
            requirement=pick.requirement,
            label=pick.label,
            t_ms=pick.t_ms,
            score=pick.score,
            quality=pick.quality,
            rank=pick.rank,
            review="needs_review",
        )

    def _summary(
        self,
        frames: list[timeline.FrameScore],
        reasons: list[str | None],
        picks: list[timeline.Pick],
        segs: list[timeline.Segment],
        requirements: dict[str, list[str]],
        standard: Any,
    ) -> dict[str, Any]:
        s = self.settings
        rejected = dict.fromkeys(REASONS, 0)
        for f, reason in zip(frames, reasons, strict=True):
            if not f.ok:
                rejected[reason or "unknown"] = rejected.get(reason or "unknown", 0) + 1
        picked = {p.requirement for p in picks}
        return {
            "config": {
                "rate": s.video_analysis_fps,
                "side": s.video_analysis_side,
                "chunk_s": s.video_chunk_s,
                "smooth_s": max(s.video_smooth_s, 1.0),
                "k": s.video_picks_per_label,
                "gap_s": s.video_pick_gap_s,
                "min_score": s.video_min_pick_score,
                "segment_s": s.video_segment_s,
                "segment_hop_s": s.video_segment_hop_s,
                "fov_mask": s.fov_mask,
                "standard": standard.id if standard is not None else None,
            },
            "decoder": {"pyav": av.__version__, "ffmpeg": _ffmpeg_version()},
            "model_id": self.model_id,
            "counts": {
                "sampled": len(frames),
                "kept": sum(1 for f in frames if f.ok),
                "rejected": rejected,
                "picks": len(picks),
                "segments": len(segs),
            },
            "missing": [r for r in requirements if r not in picked],
        }

    def _final(self, segs: list[timeline.Segment], summary: dict[str, Any]) -> None:
        """Segments, no more frame vectors, the video done and the job completed: one commit."""
        rows = [
            {
                "video_id": self.video_id,
                "model_id": self.model_id,
                "start_ms": seg.start_ms,
                "end_ms": seg.end_ms,
                "vector": vectors.to_bytes(seg.vector),
            }
            for seg in segs
        ]
        with self.ctx.sessions.begin() as session:
            _insert_ignore(session, VideoSegment, rows, ["video_id", "model_id", "start_ms"])
            session.execute(
                sa.update(VideoFrame)
                .where(VideoFrame.video_id == self.video_id)
                .values(vector=None)
            )
            video = session.get(Video, self.video_id)
            assert video is not None
            truncated = bool((video.analysis or {}).get("truncated"))
            video.analysis = {**(video.analysis or {}), **summary, "truncated": truncated}
            video.status = "done"
            video.finished_at = utcnow()
            video.retain_until = self.run_.retain_until()
            done = session.scalar(
                sa.select(sa.func.count()).where(VideoFrame.video_id == self.video_id)
            )
            self.run_._fenced(session, total=int(done or 0))
            jobs.finish(session, self.run_.lease, "completed")


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=PICK_JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def _ffmpeg_version() -> str:
    version = getattr(av, "ffmpeg_version_info", None)
    if version:
        return str(version)
    libs = getattr(av, "library_versions", {}) or {}
    return ".".join(str(x) for x in libs.get("libavcodec", ())) or "unknown"
