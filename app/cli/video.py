"""`endoseek video analyse FILE --procedure ID` and `endoseek video show ID`.

`analyse` goes through the same path as an upload: the file is copied into the video folder's
incoming/ (submit_video takes ownership of what it is given; the operator's file stays where
it is), probed, kept, queued, and its analysis runs in this process with a rich progress bar
and ETA. Ctrl-C or SIGTERM stop it after the frame in hand: the job is "interrupted" and
`endoseek video analyse` of the same file (or a server start) resumes it from its last chunk.
"""

from __future__ import annotations

import json
import shutil
import signal
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.settings import get_settings

if TYPE_CHECKING:
    from app.services.runtime import Runtime

console = Console(stderr=True)
video_app = typer.Typer(
    help="Procedure videos: analyse a file in the foreground, show a video's analysis.",
    no_args_is_help=True,
)
POLL_S = 0.5  # progress refresh while the job thread runs
FINAL = ("completed", "failed", "cancelled", "interrupted")


def _runtime() -> Runtime:
    from app.documentation.hooks import get_ingest_hooks
    from app.services.runtime import Runtime

    settings = get_settings()
    rt = Runtime.create(settings)
    rt.start()
    rt.hooks.extend(get_ingest_hooks(rt))
    return rt


def _job_state(rt: Runtime, job_id: uuid.UUID) -> tuple[str, int, int]:
    from app.services import jobs

    with rt.sessions() as session:
        job = jobs.get(session, job_id)
        assert job is not None
        return job.status, job.done, job.total


@video_app.command("analyse")
def analyse_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    procedure: Annotated[uuid.UUID, typer.Option("--procedure", help="The procedure's id.")],
) -> None:
    """Analyse a procedure video FILE in the foreground (picks, per-frame table, segments)."""
    from app.services import jobs
    from app.services.errors import ProblemError
    from app.services.job_threads import threads_of
    from app.video.store import incoming_dir, submit_video

    rt = _runtime()
    threads = threads_of(rt)
    signal.signal(signal.SIGTERM, lambda *_: threads.stop.set())
    try:
        copy = incoming_dir(rt) / f"{uuid.uuid4().hex}.part"
        shutil.copyfile(file, copy)
        try:
            submitted = submit_video(rt, procedure, copy)
        except ProblemError as exc:
            console.print(f"[red]{exc.code}: {exc.detail}")
            raise typer.Exit(2) from exc
        video, job = submitted.video, submitted.job
        typer.echo(f"video {video.id}")
        if job is None:
            console.print("[red]the video has no analysis job")
            raise typer.Exit(1)
        state = _job_state(rt, job.id)
        if not submitted.created and state[0] in jobs.RESUMABLE and not threads.running(job.id):
            threads.start(job.id, job.kind)  # the same file again: resume its analysis
        status = _follow(rt, threads, job.id)
        _show(rt, video.id)
        if status != "completed":
            raise typer.Exit(1)
    finally:
        threads.shutdown()
        rt.stop()


def _follow(rt: Runtime, threads: Any, job_id: uuid.UUID) -> str:
    """Progress bar from the job row until the job thread ends; Ctrl-C stops the job."""
    columns = (
        TextColumn("[bold]video analysis"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("video", total=None)
        try:
            while threads.running(job_id):
                status, done, total = _job_state(rt, job_id)
                bar.update(task, completed=done, total=max(total, done) or None)
                threads.stop.wait(POLL_S)
                if threads.stop.is_set():
                    threads.shutdown()
        except KeyboardInterrupt:
            threads.shutdown()
        status, done, total = _job_state(rt, job_id)
        bar.update(task, completed=done, total=max(total, done) or None)
    return status


def _show(rt_or_none: Runtime | None, video_id: uuid.UUID) -> None:
    from app.db.models import Video
    from app.video.read import video_out

    sessions = rt_or_none.sessions if rt_or_none is not None else _sessions()
    with sessions() as session:
        video = session.get(Video, video_id)
        if video is None:
            console.print(f"[red]no video {video_id}")
            raise typer.Exit(1)
        typer.echo(json.dumps(video_out(session, video), default=str, indent=2))


def _sessions():  # noqa: ANN202 - a sessionmaker
    from app.db.session import create_db_engine, create_session_factory

    settings = get_settings()
    settings.ensure_dirs()
    return create_session_factory(create_db_engine(settings.database_url))


@video_app.command("show")
def show_cmd(video_id: uuid.UUID) -> None:
    """One video as JSON: status, progress, summary and picks."""
    _show(None, video_id)
