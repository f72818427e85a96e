"""`endoseek index`: rebuild the vector index from the database, or show how it stands.

The database is the source of truth, so any index can be rebuilt from it: FAISS writes a fresh
snapshot (a running server keeps its own copy until it restarts, and reconciles with the DB
anyway); Milvus gets every vector of the model upserted again and ids the DB no longer has
removed, in place, while searches keep answering. No model is loaded: the vectors are read.
After a re-index the old model's collection stays (a way back); `drop` removes it.
"""

from __future__ import annotations

import json

import typer
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import create_db_engine, create_session_factory
from app.services import model_registry, vectors
from app.services.index_service import IndexService, milvus_generations, milvus_options
from app.settings import Settings, get_settings

app = typer.Typer(
    help="The vector index: rebuild it from the database, show its state.", no_args_is_help=True
)


def _model(settings: Settings, model: str | None) -> tuple[str, int, bool]:
    """(id, dim, active) of the model named by an id prefix, or of the active model."""
    with _sessions(settings)() as session:
        rows = model_registry.list_models(session)
    if model:
        found = [r for r in rows if r.id.startswith(model)]
        if len(found) != 1:
            raise typer.BadParameter(f"{len(found)} models match {model!r}", param_hint="--model")
        row = found[0]
    else:
        row = next((r for r in rows if r.active), None)
        if row is None:
            raise typer.BadParameter(
                "no active model yet: start the service once", param_hint="--model"
            )
    return row.id, row.dim, row.active


def _sessions(settings: Settings) -> sessionmaker[Session]:
    return create_session_factory(create_db_engine(settings.database_url))


@app.command()
def rebuild(
    model: str | None = typer.Option(None, help="Model id or prefix (default: the active one)."),
) -> None:
    """Rebuild a model's index from the database (the source of truth)."""
    settings = get_settings()
    settings.ensure_dirs()
    model_id, dim, active = _model(settings, model)
    svc = IndexService.for_model(_sessions(settings), settings, model_id, dim)
    index = svc.build(model_id, dim)
    svc.swap(model_id, index)
    path = svc.snapshot()  # FAISS: a new snapshot; Milvus: flushed
    if active:
        svc.activate()  # Milvus: the alias points at this model's collection
    where = str(path) if path else f"the Milvus collection of {model_id[:12]}"
    typer.echo(f"rebuilt {len(index)} vectors of model {model_id[:12]} into {where}")


@app.command()
def status(
    model: str | None = typer.Option(None, help="Model id or prefix (default: the active one)."),
) -> None:
    """Print the backend, the model and whether the index holds exactly the DB's vectors (JSON)."""
    settings = get_settings()
    model_id, dim, active = _model(settings, model)
    with _sessions(settings)() as session:
        db_ids = vectors.live_ids(session, model_id)
    out: dict[str, object] = {
        "backend": settings.vector_backend,
        "model": model_id,
        "active": active,
        "dim": dim,
        "database_vectors": len(db_ids),
    }
    if settings.vector_backend == "milvus":
        opts = milvus_options(settings)
        gens = milvus_generations(**opts)
        out["milvus_uri"] = opts["uri"]  # never the token
        out["collection"] = gens.collection(model_id)
        out["alias_here"] = gens.is_active(model_id)
        have = gens.open(model_id, dim).ids()
        out["index_vectors"] = len(have)
        out["in_sync"] = bool(len(have) == len(db_ids) and (have == db_ids).all())
    else:
        from indexer.snapshot import _snapshots

        newest = next((m for m, _ in _snapshots(settings.index_dir, model_id) if m), None)
        out["snapshot_vectors"] = None if newest is None else newest.count
        out["snapshot_watermark"] = None if newest is None else newest.watermark
    typer.echo(json.dumps(out, indent=2))


@app.command()
def drop(
    model: str = typer.Option(..., help="Model id or prefix of an inactive model."),
) -> None:
    """Drop an inactive model's Milvus collection (frees the server's memory after a re-index)."""
    settings = get_settings()
    if settings.vector_backend != "milvus":
        raise typer.BadParameter("only with ENDOSEEK_VECTOR_BACKEND=milvus", param_hint="--model")
    model_id, _, active = _model(settings, model)
    if active:
        raise typer.BadParameter("that is the active model", param_hint="--model")
    milvus_generations(**milvus_options(settings)).drop(model_id)
    typer.echo(f"dropped the Milvus collection of model {model_id[:12]}")
