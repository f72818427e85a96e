"""`endoseek reindex`, `endoseek import` and `endoseek jobs list|show|resume`.

The CLI runs a job in the foreground with a rich progress bar; a server in another process
notices the model flip on its next active-model check. Ctrl-C marks the job interrupted;
SIGKILL leaves it "running" with a dead owner, and `jobs resume ID` takes it over.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.services import jobs
from app.settings import get_settings

if TYPE_CHECKING:  # the runners import torch; only `reindex`, `import` and `resume` need them
    from sqlalchemy.orm import Session, sessionmaker

    from app.db.models import Job
    from app.services.job_exec import JobContext

console = Console(stderr=True)
jobs_app = typer.Typer(help="Batch jobs: list, show, resume.", no_args_is_help=True)

Batch = Annotated[int, typer.Option("--batch", min=1, help="Images per model call.")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Decoder threads.")]
ChunkOpt = Annotated[int, typer.Option("--chunk", min=1, help="Rows per DB transaction.")]


class Engine(StrEnum):
    """Where a re-index embeds: this process, or a Ray Data cluster."""

    local = "local"
    ray = "ray"


def _context() -> JobContext:
    from app.services.job_exec import JobContext

    return JobContext.from_settings(get_settings())


def _sessions() -> sessionmaker[Session]:
    """The database alone, for the verbs that only read jobs (no model, no torch)."""
    from app.db.session import create_db_engine, create_session_factory

    settings = get_settings()
    settings.ensure_dirs()
    return create_session_factory(create_db_engine(settings.database_url))


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int, int], None]]:
    columns = (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=None, failed=0)

        def update(done: int, failed: int, total: int) -> None:
            bar.update(task, completed=done + failed, total=total, failed=failed)

        yield update


def _run(ctx: JobContext, job_id: uuid.UUID, kind: str) -> None:
    """Run a job in the foreground; SIGTERM/Ctrl-C stop it cleanly (resumable)."""
    from app.services.job_threads import RUNNERS

    signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
    runner = RUNNERS[kind]
    typer.echo(f"job {job_id}")
    try:
        with _progress(kind) as update:
            status = runner(ctx, job_id, update)
    except KeyboardInterrupt:
        ctx.stop.set()
        status = "interrupted"
    except jobs.JobBusyError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    _summary(ctx, job_id)
    if status != "completed":
        raise typer.Exit(1)


def _summary(ctx: JobContext, job_id: uuid.UUID) -> None:
    with ctx.sessions() as session:
        job = jobs.get(session, job_id)
        info = jobs.describe(job) if job else {}
    console.print(
        f"{info.get('status')}: done {info.get('done')}, failed {info.get('failed')}, "
        f"total {info.get('total')}"
    )
    for err in info.get("errors", []):
        console.print(f"  [yellow]{err.get('path') or err.get('image')}[/]: {err['error']}")


def reindex_cmd(
    bundle: Annotated[Path, typer.Option("--bundle", exists=True, file_okay=False)],
    batch: Batch = 64,
    workers: Workers = 2,
    chunk: ChunkOpt = 256,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="local: this process (default); ray: a Ray Data cluster (pip install "
            "'endoseek\\[ray]'), GPUs per model actor when it has them.",
        ),
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster address (e.g. ray-head:6379 or auto); default: a local Ray "
            "started for this run. Only with --engine ray.",
        ),
    ] = None,
) -> None:
    """Re-embed every photo with BUNDLE, then make it the active model (zero downtime)."""
    from app.services import reindex

    if address and engine is not Engine.ray:
        console.print("[red]--address needs --engine ray")
        raise typer.Exit(2)
    ctx = _context()
    try:
        job = reindex.start_reindex(
            ctx,
            bundle,
            batch=batch,
            workers=workers,
            chunk=chunk,
            engine=engine.value,
            address=address,
        )
    except reindex.ReindexRefusedError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    _run(ctx, job.id, reindex.KIND)


def import_cmd(
    folder: Annotated[Path | None, typer.Argument(exists=True, file_okay=False)] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", exists=True, dir_okay=False)
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="Procedure kind for a folder.")] = "other",
    procedure: Annotated[str | None, typer.Option("--procedure")] = None,
    batch: Batch = 32,
    workers: Workers = 2,
    chunk: ChunkOpt = 128,
) -> None:
    """Import a folder (subfolder = procedure) or a CSV manifest of an existing archive."""
    if (folder is None) == (manifest is None):
        console.print("[red]give either a FOLDER or --manifest FILE.csv")
        raise typer.Exit(2)
    params = {
        "dir": str(folder.resolve()) if folder else None,
        "manifest": str(manifest.resolve()) if manifest else None,
        "kind": kind,
        "procedure": procedure,
        "batch": batch,
        "workers": workers,
        "chunk": chunk,
    }
    from app.services import bulk_import

    ctx = _context()
    job = bulk_import.start_import(ctx, params)
    _run(ctx, job.id, bulk_import.KIND)


@jobs_app.command("list")
def list_cmd(
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Newest jobs with their progress."""
    with _sessions()() as session:
        rows = [jobs.describe(j) for j in jobs.list_jobs(session, limit=limit)]
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    table = Table("id", "kind", "status", "done", "failed", "total", "cursor", "rate/s")
    for r in rows:
        rate = f"{r['rate']:.1f}" if r["rate"] else "-"
        status = r["status"] + (" (stale)" if r["stale"] else "")
        table.add_row(
            r["id"],
            r["kind"],
            status,
            *(str(r[k]) for k in ("done", "failed", "total", "cursor")),
            rate,
        )
    Console().print(table)


def _job_or_exit(session: Session, job_id: uuid.UUID) -> Job:
    """The job, or a red message and exit code 1."""
    job = jobs.get(session, job_id)
    if job is None:
        console.print(f"[red]no job {job_id}")
        raise typer.Exit(1)
    return job


@jobs_app.command("show")
def show_cmd(job_id: uuid.UUID) -> None:
    """One job as JSON (errors included)."""
    with _sessions()() as session:
        typer.echo(json.dumps(jobs.describe(_job_or_exit(session, job_id)), default=str, indent=2))


@jobs_app.command("resume")
def resume_cmd(job_id: uuid.UUID) -> None:
    """Resume an interrupted, failed or dead job from its cursor."""
    ctx = _context()
    with ctx.sessions() as session:
        kind = _job_or_exit(session, job_id).kind
    _run(ctx, job_id, kind)


def register(app: typer.Typer) -> None:
    """Add `reindex`, `import` and `jobs` to the `endoseek` app."""
    app.command("reindex")(reindex_cmd)
    app.command("import")(import_cmd)
    app.add_typer(jobs_app, name="jobs")


if __name__ == "__main__":  # `python -m app.cli.jobs ...` until the main CLI mounts these verbs
    _standalone = typer.Typer(no_args_is_help=True)
    register(_standalone)
    _standalone()
