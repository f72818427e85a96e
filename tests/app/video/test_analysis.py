"""The analysis job on a SYNTHETIC procedure clip: picks, checklist, determinism, stop/resume,
cancel, and SIGKILL of a real server mid-analysis.

The clip (conftest SCRIPT) has two caecum intervals, an ileum interval, landmark-free mucosa
and blurred, dark, glare and out-of-body seconds at known times.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.db.models import Job, Video, VideoFrame, VideoImage, VideoSegment
from app.db.session import create_db_engine
from app.main import create_app
from app.services import jobs
from app.services.job_exec import JobContext
from app.video import analysis
from app.video.analysis import expected_frames, run_video_analysis
from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready
from tests.app.video.conftest import VideoService, join_job, queue_video, video_service
from tests.app.video.factory import BAD_KINDS, SyntheticVideo
from tests.timing import scaled

LANDMARKS = ("cecum", "ileum")


def picks_of(video: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return sorted((p["requirement"], p["label"], p["t_ms"], p["rank"]) for p in video["picks"])


def frame_table(svc: VideoService, video_id: str) -> list[dict[str, Any]]:
    r = svc.client.get(
        f"/v1/videos/{video_id}/frames", params={"limit": 1000}, headers=svc.headers["search"]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return body["items"] if isinstance(body, dict) else body


def test_picks_lie_in_their_landmark_intervals_and_never_in_bad_seconds(
    served: VideoService, clip: SyntheticVideo, analysed: dict[str, Any]
) -> None:
    video = analysed
    assert video["status"] == "done", video
    picks = video["picks"]
    by_requirement = {p["requirement"] for p in picks}
    assert by_requirement == set(LANDMARKS)  # retroflex-rectum has no reference photo
    for pick in picks:
        truth = clip.kind_at(pick["t_ms"] / 1000)
        assert truth == pick["label"] == pick["requirement"], (pick, truth)
        assert truth not in BAD_KINDS
        assert pick["review"] == "needs_review"
        assert pick["score"] >= served.settings.video_min_pick_score
    for requirement in LANDMARKS:
        times = sorted(p["t_ms"] for p in picks if p["requirement"] == requirement)
        assert 1 <= len(times) <= served.settings.video_picks_per_label
        assert all(b - a >= 2000 for a, b in zip(times, times[1:], strict=False))

    frames = frame_table(served, video["id"])
    assert len(frames) == expected_frames(clip.intervals[-1].end_s, 2.0)
    by_t = {f["t_ms"]: f for f in frames}
    for pick in picks:
        assert by_t[pick["t_ms"]]["ok"]
    for f in frames:  # every bad second is rejected, with a reason
        if clip.kind_at(f["t_ms"] / 1000) in BAD_KINDS:
            assert not f["ok"] and f["reason"], f
            assert f["labels"] == []

    summary = video["summary"]
    counts = summary["counts"]
    assert counts["sampled"] == len(frames)
    assert counts["kept"] + sum(counts["rejected"].values()) == counts["sampled"]
    assert counts["picks"] == len(picks) and counts["segments"] > 0
    assert summary["model_id"] == served.rt.index.model_id
    assert summary["decoder"]["pyav"] and summary["decoder"]["ffmpeg"]
    assert summary["config"]["rate"] == 2.0 and summary["truncated"] is False
    assert summary["missing"] == ["retroflex-rectum"]
    assert video["progress"]["done"] == video["progress"]["total"] == len(frames)

    with served.rt.sessions() as s:
        vid = uuid.UUID(video["id"])
        assert not s.scalar(
            sa.select(sa.func.count()).where(
                VideoFrame.video_id == vid, VideoFrame.vector.is_not(None)
            )
        )
        assert (
            s.scalar(sa.select(sa.func.count()).where(VideoSegment.video_id == vid))
            == (counts["segments"])
        )
        row = s.get(Video, vid)
        assert row.file_key is not None  # kept (video_keep_original) for the retention period
        assert (Path(served.settings.video_dir) / row.file_key).is_file()
    rate = len(frames) / video["_seconds"]
    print(f"\nanalysis of {len(frames)} frames: {video['_seconds']:.2f} s, {rate:.1f} frames/s")


def test_accepted_picks_fill_the_checklist(served: VideoService, analysed: dict[str, Any]) -> None:
    procedure = analysed["procedure_id"]

    def statuses() -> dict[str, str]:
        doc = served.documentation(procedure)
        return {r["id"]: r["status"] for r in doc["requirements"]}

    before = statuses()
    assert all(before[r] != "documented" for r in LANDMARKS), before  # pending picks count not
    for requirement in LANDMARKS:
        best = next(
            p for p in analysed["picks"] if p["requirement"] == requirement and p["rank"] == 1
        )
        r = served.review(analysed["id"], best["image_id"], "accept")
        assert r.status_code == 200, r.text
    after = statuses()
    assert all(after[r] == "documented" for r in LANDMARKS), after
    assert after["retroflex-rectum"] != "documented"


def test_the_same_file_twice_gives_the_same_picks(
    served: VideoService, clip: SyntheticVideo, analysed: dict[str, Any]
) -> None:
    again = served.analyse(served.procedure("again"), clip.path)
    assert again["status"] == "done"
    assert picks_of(again) == picks_of(analysed)
    assert again["summary"]["counts"] == analysed["summary"]["counts"]


def _run_with(svc: VideoService, job_id: uuid.UUID, on_progress: Any) -> tuple[str, JobContext]:
    ctx = JobContext.from_runtime(svc.rt)
    status = run_video_analysis(ctx, job_id, lambda done, _f, total: on_progress(ctx, done))
    return status, ctx


def test_a_stopped_analysis_resumes_from_its_last_chunk_with_the_same_picks(
    served: VideoService, clip: SyntheticVideo, analysed: dict[str, Any]
) -> None:
    procedure = served.procedure("resumed")
    video_id, job_id = queue_video(served.rt, procedure, clip.path)
    status, _ = _run_with(served, job_id, lambda ctx, done: ctx.stop.set())  # after chunk 1
    assert status == "interrupted"
    with served.rt.sessions() as s:
        job = s.get(Job, job_id)
        frames = s.scalars(sa.select(VideoFrame.index).where(VideoFrame.video_id == video_id)).all()
        assert job.status == "interrupted" and job.cursor == max(frames) > 0
        assert job.done == len(frames) < expected_frames(clip.intervals[-1].end_s, 2.0)
        assert s.get(Video, video_id).status == "analysing"
    # the next run crashes in its end phase after the stills were stored (before the final
    # commit): the run after that finishes without adding anything twice
    crash = RuntimeError("crash before the final commit")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analysis._EndPhase, "_final", lambda *_: (_ for _ in ()).throw(crash))
        with pytest.raises(RuntimeError, match="crash"):
            _run_with(served, job_id, lambda ctx, done: None)
    assert served.video(str(video_id))["status"] == "failed"
    with served.rt.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).where(VideoImage.video_id == video_id)) == len(
            analysed["picks"]
        )
    status, _ = _run_with(served, job_id, lambda ctx, done: None)
    assert status == "completed"
    video = served.video(str(video_id))
    assert video["status"] == "done"
    assert picks_of(video) == picks_of(analysed)
    assert video["summary"]["counts"] == analysed["summary"]["counts"]
    with served.rt.sessions() as s:
        assert s.get(Job, job_id).params["run"]["runs"] == 3
        assert s.scalar(sa.select(sa.func.count()).where(VideoImage.video_id == video_id)) == len(
            analysed["picks"]
        )
        segments = sa.select(sa.func.count()).where(VideoSegment.video_id == video_id)
        assert s.scalar(segments) == video["summary"]["counts"]["segments"]


def test_cancel_between_chunks(served: VideoService, clip: SyntheticVideo) -> None:
    procedure = served.procedure("cancelled")
    video_id, job_id = queue_video(served.rt, procedure, clip.path)

    def cancel(ctx: JobContext, done: int) -> None:
        with served.rt.sessions.begin() as s:
            jobs.request_cancel(s, job_id)  # the job is running: it stops at its next check

    status, _ = _run_with(served, job_id, cancel)
    assert status == "cancelled"
    video = served.video(str(video_id))
    assert video["status"] == "cancelled" and video["picks"] == []
    with served.rt.sessions() as s:
        job = s.get(Job, job_id)
        assert job.status == "cancelled" and job.done == job.cursor + 1
        assert not s.scalar(
            sa.select(sa.func.count()).where(
                VideoFrame.video_id == video_id, VideoFrame.vector.is_not(None)
            )
        )
    assert served.rt.index is not None
    with pytest.raises(jobs.JobBusyError):  # a cancelled job cannot be claimed again
        run_video_analysis(JobContext.from_runtime(served.rt), job_id)


# --- a real server killed mid-analysis -----------------------------------------------------

POLL_S = 0.02  # poll interval while waiting for a state of the server (bounded by deadlines)


def _poll(fetch: Any, until: Any, what: str, deadline_s: float = 180) -> Any:
    end = time.monotonic() + scaled(deadline_s)
    while time.monotonic() < end:
        value = fetch()
        if until(value):
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkill_mid_analysis_then_restart_resumes_with_the_same_picks(
    tmp_path: Path, clip: SyntheticVideo, analysed: dict[str, Any]
) -> None:
    chunk_s = 0.5  # one frame per chunk: many commits, so the kill lands between two
    with video_service(tmp_path, clip, video_chunk_s=chunk_s) as svc:
        procedure = svc.procedure("killed")
        keys = svc.headers
    url = svc.settings.database_url
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(
        tmp_path,
        url,
        port,
        ENDOSEEK_VIDEO_DIR=str(tmp_path / "videos"),
        ENDOSEEK_VIDEO_CHUNK_S=str(chunk_s),
    )
    log = tmp_path / "server.log"
    server = start_server(env, log)
    try:
        wait_ready(base, server)
        with open(clip.path, "rb") as fh:
            r = httpx.post(
                f"{base}/v1/procedures/{procedure}/videos",
                files={"file": ("clip.mp4", fh, "video/mp4")},
                headers=keys["ingest"],
                timeout=scaled(60),
            )
        assert r.status_code == 202, r.text
        video_id, job_id = r.json()["id"], r.json()["progress"]["job_id"]

        def job() -> dict[str, Any]:
            got = httpx.get(f"{base}/v1/jobs/{job_id}", headers=keys["admin"], timeout=scaled(30))
            return got.json()

        seen = _poll(job, lambda j: (j["cursor"] or 0) > 0, "a committed chunk")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=scaled(30))
        assert seen["status"] == "running", log.read_text()[-2000:]

        engine = create_db_engine(url)
        with engine.connect() as conn:
            killed = conn.execute(sa.select(Job).where(Job.id == uuid.UUID(job_id))).one()
            indices = conn.scalars(
                sa.select(VideoFrame.index).where(VideoFrame.video_id == uuid.UUID(video_id))
            ).all()
        engine.dispose()
        assert killed.status == "running", "the kill must land before the analysis ended"
        assert killed.cursor > 0 and max(indices) == killed.cursor
        assert len(indices) == killed.done  # rows and cursor committed together
    finally:
        stop_server(server)
    # the restart: the service starts on the same database and folders and resumes the
    # video job by itself (in this process, so the test can join the job's thread)
    with TestClient(create_app(svc.settings, with_ui=False), raise_server_exceptions=False) as c:
        again = VideoService(c, keys, svc.settings)
        join_job(again.rt, uuid.UUID(job_id))
        done = again.video(video_id)
    assert done["status"] == "done", done
    assert picks_of(done) == picks_of(analysed)
    engine = create_db_engine(url)
    with engine.connect() as conn:
        resumed = conn.execute(sa.select(Job).where(Job.id == uuid.UUID(job_id))).one()
        count = conn.scalar(
            sa.select(sa.func.count()).where(VideoFrame.video_id == uuid.UUID(video_id))
        )
    engine.dispose()
    assert resumed.status == "completed" and resumed.params["run"]["runs"] == 2
    assert count == done["summary"]["counts"]["sampled"] == analysed["summary"]["counts"]["sampled"]


def test_cli_analyses_a_file_in_the_foreground_and_shows_it(
    served: VideoService,
    clip: SyntheticVideo,
    analysed: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`endoseek video analyse` (its own runtime on the service's database) and `video show`."""
    from typer.testing import CliRunner

    from app.cli.main import app as cli
    from app.settings import get_settings

    s = served.settings
    env = {
        "ENDOSEEK_DATABASE_URL": s.database_url,
        "ENDOSEEK_STORAGE_DIR": str(s.storage_dir),
        "ENDOSEEK_INDEX_DIR": str(s.index_dir),
        "ENDOSEEK_DICOM_SPOOL_DIR": str(s.dicom_spool_dir),
        "ENDOSEEK_VIDEO_DIR": str(s.video_dir),
        "ENDOSEEK_VIDEO_CHUNK_S": str(s.video_chunk_s),
        "ENDOSEEK_INDEX_DEVICE": "cpu",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ENDOSEEK_BUNDLE", raising=False)
    procedure = served.procedure("cli")
    previous = signal.getsignal(signal.SIGTERM)  # the verb installs its own handler
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(cli, ["video", "analyse", str(clip.path), "--procedure", procedure])
        assert result.exit_code == 0, result.output
        video_id = next(
            line.split()[1] for line in result.output.splitlines() if line.startswith("video ")
        )
        shown = runner.invoke(cli, ["video", "show", video_id])
    finally:
        signal.signal(signal.SIGTERM, previous)
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    video = json.loads(shown.output)
    assert video["status"] == "done" and video["procedure_id"] == procedure
    assert picks_of(video) == picks_of(analysed)


@pytest.mark.postgres
def test_on_postgresql_an_interrupted_analysis_finishes_once(
    tmp_path: Path, pg_url: str, clip: SyntheticVideo
) -> None:
    """The same job path on PostgreSQL: chunk commits, resume, the end phase run twice."""
    with video_service(tmp_path, clip, database_url=pg_url) as svc:
        video_id, job_id = queue_video(svc.rt, svc.procedure("pg-video"), clip.path)
        status, _ = _run_with(svc, job_id, lambda ctx, done: ctx.stop.set())
        assert status == "interrupted"
        status, _ = _run_with(svc, job_id, lambda ctx, done: None)
        assert status == "completed"
        first = svc.video(str(video_id))
        with svc.rt.sessions.begin() as s:  # as if the end phase had to run again
            s.get(Job, job_id).status = "interrupted"
        status, _ = _run_with(svc, job_id, lambda ctx, done: None)
        assert status == "completed"
        video = svc.video(str(video_id))
    assert video["status"] == "done" and picks_of(video) == picks_of(first)
    assert {p["requirement"] for p in video["picks"]} == set(LANDMARKS)
    for pick in video["picks"]:
        assert clip.kind_at(pick["t_ms"] / 1000) == pick["label"]
