"""`endoseek backup DIR` and `endoseek restore DIR [--force]` (logic: app/services/backup.py).

No model is loaded: backing up needs the database and the storage directory only, and the
index is rebuilt by the service at its next start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from app.services import backup as svc
from app.settings import get_settings

console = Console(stderr=True)

Dir = Annotated[Path, typer.Argument(help="The backup directory.", metavar="DIR", file_okay=False)]


@contextmanager
def _bar(description: str, total: int) -> Iterator[svc.Advance]:
    """A rich progress bar in bytes (hidden when stderr is not a terminal)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def _summary(verb: str, directory: Path, manifest: dict[str, Any]) -> None:
    counts, db = manifest["counts"], manifest["database"]
    active = next((m["id"][:12] for m in manifest["models"] if m["active"]), "none")
    typer.echo(
        f"{verb} {directory}: {counts.get('live_images', 0)} live images, "
        f"{counts.get('files', len(manifest['files']))} files, "
        f"{counts.get('procedures', 0)} procedures, {counts.get('embeddings', 0)} vectors; "
        f"{db['dialect']} at revision {db['revision']}; active model {active}"
    )
    if manifest.get("deleted_during_backup"):
        n = len(manifest["deleted_during_backup"])
        typer.echo(f"{n} image file(s) were deleted while the backup ran; restore deletes them")


def backup_cmd(directory: Dir) -> None:
    """Back up the database and the image files it references into a new DIR (service may run)."""
    try:
        manifest = svc.backup(get_settings(), directory, progress=_bar)
    except svc.BackupError as exc:
        console.print(f"[red]backup failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    _summary("backed up to", directory, manifest)


def restore_cmd(
    directory: Dir,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty database, storage and index.")
    ] = False,
) -> None:
    """Restore a backup DIR into the configured database and storage (service stopped)."""
    settings = get_settings()
    try:
        manifest = svc.restore(settings, directory, force=force, progress=_bar)
    except svc.BackupError as exc:
        console.print(f"[red]restore failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    _summary("restored from", directory, manifest)
    typer.echo("start the service: it rebuilds the search index from the database")
