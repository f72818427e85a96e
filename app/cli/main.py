"""The `endoseek` command: serve and migrate here, every other verb imported when it runs.

Verbs live in their own modules and are listed in VERBS with their one-line help, so
`endoseek --help` and the verbs that need no model start without importing torch.
"""

from __future__ import annotations

import logging

import typer

from app.cli.lazy import LazyVerb, lazy_group

# To add a verb: one line here ("module:attribute" is a typer.Typer sub-app or a command
# function); its module is imported only when the verb runs. Keep `help` equal to the first
# line of the target's help (tests/app/test_import_boundary.py checks it).
VERBS = (
    LazyVerb("keys", "app.cli.keys:app", "Manage API keys."),
    LazyVerb("users", "app.cli.users:app", "Manage staff accounts (web UI sign-in)."),
    LazyVerb(
        "import",
        "app.cli.jobs:import_cmd",
        "Import a folder (subfolder = procedure) or a CSV manifest of an existing archive.",
    ),
    LazyVerb(
        "reindex",
        "app.cli.jobs:reindex_cmd",
        "Re-embed every photo with BUNDLE, then make it the active model (zero downtime).",
    ),
    LazyVerb("jobs", "app.cli.jobs:jobs_app", "Batch jobs: list, show, resume."),
    LazyVerb(
        "index",
        "app.cli.index:app",
        "The vector index: rebuild it from the database, show its state.",
    ),
    LazyVerb(
        "video",
        "app.cli.video:video_app",
        "Procedure videos: analyse a file in the foreground, show a video's analysis.",
    ),
    LazyVerb(
        "backup",
        "app.cli.backup:backup_cmd",
        "Back up the database and the image files it references into a new DIR (service may run).",
    ),
    LazyVerb(
        "restore",
        "app.cli.backup:restore_cmd",
        "Restore a backup DIR into the configured database and storage (service stopped).",
    ),
    LazyVerb(
        "import-reference",
        "app.cli.reference:import_reference",
        "Store labelled photos as reference photos of their folder's label.",
    ),
    LazyVerb(
        "calibrate",
        "app.documentation.cli:calibrate",
        "Calibrate per-label landmark thresholds for a target precision on held-out images.",
    ),
    LazyVerb(
        "demo",
        "app.cli.demo:demo",
        "Seed a SYNTHETIC demo archive (generated photos, reference gallery, a QA key).",
    ),
    LazyVerb(
        "dicom-listen",
        "app.cli.dicom:dicom_listen",
        "Run the DICOM C-STORE receiver (Storage SCP) into the spool that `serve` ingests.",
    ),
    LazyVerb("bundle", "embedder.cli:bundle_app", "Build and inspect model bundles."),
    LazyVerb(
        "train",
        "training.cli:train",
        "Fine-tune (LoRA + fusion head) with metric learning and export the best bundle.",
    ),
    LazyVerb(
        "eval",
        "training.cli:evaluate",
        "Score a bundle and its baselines on the dataset's test split; JSON + Markdown + PNG.",
    ),
)

app = typer.Typer(
    name="endoseek",
    help="EndoSeek: image retrieval for GI endoscopy.",
    no_args_is_help=True,
    cls=lazy_group(VERBS),
)


@app.command()
def migrate(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Bring the database (ENDOSEEK_DATABASE_URL) to the newest schema."""
    from app.db import migrate as m
    from app.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    m.upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}")


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Default: ENDOSEEK_HOST (127.0.0.1)."),
    port: int | None = typer.Option(None, help="Default: ENDOSEEK_PORT (8000)."),
    announce: bool = typer.Option(False, help="Print the URL and, on first start, an admin key."),
    workers: int | None = typer.Option(
        None,
        min=1,
        help="Processes behind the port (default ENDOSEEK_WORKERS, 1); more than one needs "
        "ENDOSEEK_VECTOR_BACKEND=milvus with a server (docs/deploy.md).",
    ),
) -> None:
    """Run the HTTP service (one process by default; --workers N with a shared index)."""
    import uvicorn

    from app.cli import serving
    from app.cli.keys import ensure_admin_key
    from app.main import create_app
    from app.settings import get_settings

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    workers = workers or settings.workers
    try:
        for warning in serving.check_workers(settings, workers):
            typer.echo(f"warning: {warning}", err=True)
    except serving.WorkersRefusedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    if announce:
        key = ensure_admin_key(settings, name="admin (first start)")
        typer.echo(f"EndoSeek at http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
        if key:
            typer.echo(f"Admin API key (shown once, store it now): {key}")
    from app.api import logsafe
    from app.api.server_options import uvicorn_options

    logsafe.install()  # no query strings (patient identifiers) in access lines
    options = uvicorn_options(settings)  # slow and stuck clients: docs/deploy.md
    if workers > 1:
        serving.run_workers(host, port, workers, settings, **options)
        return
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        **options,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
