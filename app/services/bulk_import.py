"""Bulk import of an existing archive (a folder or a CSV manifest) with the re-index machinery.

Entries are listed in a deterministic order and keyed by position, so the job's cursor is the
last position done; on resume the listing is rebuilt and, as every file is deduplicated by
its hash within its procedure, a changed folder costs re-reads, never duplicate rows. A file
that cannot be read, decoded or parsed is recorded in the job ({path, error}) and skipped.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import (
    PROCEDURE_CODE_RULE,
    PROCEDURE_KINDS,
    Embedding,
    Image,
    Job,
    Label,
    Model,
    Procedure,
)
from app.services import jobs, model_registry, vectors
from app.services.job_exec import JobContext, Progress, Stages, run_job, run_stages
from app.services.pending_models import pending_models
from app.services.procedures import is_code
from app.services.storage import storage_key
from app.services.stored_photo import stored_photo
from embedder import Embedder
from indexer.pipeline import Chunk, Decoded, RunResult

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

KIND = "import"
SOURCE = "import"
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# room and operator (optional): pseudonymous codes (PROCEDURE_CODE_PATTERN), never names; a
# row with an invalid code is a job error; an existing procedure's empty code is filled, a
# different stored code is kept (the first one wins, as for DICOM)
MANIFEST_COLUMNS = (
    "path",
    "procedure_external_id",
    "procedure_kind",
    "captured_at",
    "label",
    "room",
    "operator",
)


@dataclass(frozen=True)
class Entry:
    """One file to import, as listed (values are validated when the file is decoded)."""

    path: str
    procedure: str
    kind: str
    captured_at: str = ""
    label: str = ""
    room: str = ""
    operator: str = ""


@dataclass
class Loaded:
    sha256: str
    mime: str
    width: int
    height: int
    data: bytes
    captured_at: datetime | None


def list_folder(root: Path, procedure: str | None, kind: str) -> list[Entry]:
    """Image files under `root`, sorted; a first-level subfolder names the procedure."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if path.suffix.lower() not in EXTENSIONS or any(x.startswith(".") for x in rel.parts):
            continue
        proc = rel.parts[0] if len(rel.parts) > 1 else (procedure or root.name)
        out.append(Entry(str(path), proc, kind))
    return out


def read_manifest(path: Path) -> list[Entry]:
    """Rows of a CSV manifest (header: path, procedure_external_id, procedure_kind, ...)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(MANIFEST_COLUMNS[:3]) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: manifest lacks column(s) {sorted(missing)}")
        rows = list(reader)
    base = path.parent
    return [
        Entry(
            str(base / r["path"]),
            (r.get("procedure_external_id") or "").strip(),
            (r.get("procedure_kind") or "").strip(),
            (r.get("captured_at") or "").strip(),
            (r.get("label") or "").strip(),
            (r.get("room") or "").strip(),
            (r.get("operator") or "").strip(),
        )
        for r in rows
    ]


class Entries:
    """A listing as a pipeline source: key = 1-based position."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    def fetch(self, after: int | None, limit: int) -> Sequence[tuple[int, Entry]]:
        start = after or 0
        return [(start + i + 1, e) for i, e in enumerate(self.entries[start : start + limit])]


def _parse_time(value: str) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def start_import(ctx: JobContext, params: dict[str, Any]) -> Job:
    """A pending import job; params: dir or manifest, kind, procedure, batch, workers, chunk."""
    with ctx.sessions.begin() as session:
        return jobs.create(session, KIND, params)


def _listing(params: dict[str, Any]) -> list[Entry]:
    if params.get("manifest"):
        return read_manifest(Path(params["manifest"]))
    return list_folder(Path(params["dir"]), params.get("procedure"), params.get("kind", "other"))


def _models(ctx: JobContext) -> list[tuple[Model, Embedder]]:
    """The active model (the configured bundle becomes active on a fresh DB) + pending ones."""
    device = "cpu" if ctx.settings.index_device == "cpu" else None
    with ctx.sessions.begin() as session:
        active = model_registry.active(session)
        if active is None:
            emb = Embedder.from_bundle(ctx.settings.bundle, device=device)
            active = model_registry.register(session, emb, str(Path(ctx.settings.bundle).resolve()))
            model_registry.activate(session, active.id)
        rows = [active, *pending_models(session, active.id)]
    return [(m, Embedder.from_bundle(str(m.bundle_path), device=device)) for m in rows]


def run_import(ctx: JobContext, job_id: uuid.UUID, progress: Progress | None = None) -> str:
    """Run (or resume) an import job; returns the final status."""
    return run_job(ctx, job_id, lambda lease: _body(ctx, lease, progress))


def _body(ctx: JobContext, lease: jobs.Lease, progress: Progress | None) -> str:
    with ctx.sessions() as session:
        job = session.get(Job, lease.job_id)
        assert job is not None
        params, base = dict(job.params), (job.done, job.failed)
    entries = _listing(params)
    jobs.set_total(ctx.sessions, lease, len(entries))
    models = _models(ctx)

    def report(r: RunResult) -> None:
        if progress is not None:
            progress(base[0] + r.done, base[1] + r.failed, len(entries))

    sizes = {k: int(params.get(k, d)) for k, d in (("batch", 32), ("workers", 2), ("chunk", 128))}
    result = run_stages(
        ctx, _stages(ctx, lease, models, Entries(entries), params), **sizes, progress=report
    )
    if result.stopped:
        return "interrupted"
    with ctx.sessions.begin() as session:
        jobs.finish(session, lease, "completed")
    return "completed"


def _stages(
    ctx: JobContext,
    lease: jobs.Lease,
    models: list[tuple[Model, Embedder]],
    source: Entries,
    params: dict[str, Any],
) -> Stages:
    max_pixels = ctx.settings.max_pixels
    origin = str(params.get("source", SOURCE))

    def decode(entry: Entry) -> Decoded:
        if entry.kind not in PROCEDURE_KINDS:
            raise ValueError(f"procedure kind {entry.kind!r} is not one of {PROCEDURE_KINDS}")
        if not entry.procedure:
            raise ValueError("no procedure external id")
        for name, code in (("room", entry.room), ("operator", entry.operator)):
            if code and not is_code(code):
                raise ValueError(f"{name}: {PROCEDURE_CODE_RULE}")  # the value is not repeated
        when = _parse_time(entry.captured_at)
        data = Path(entry.path).read_bytes()
        # the shared path (decode guard, field-of-view mask): a damaged file is an
        # ImageDecodeError, listed in the job's errors
        kept = stored_photo(
            data, max_pixels=max_pixels, fov_mask=ctx.settings.fov_mask, prepare=prepare
        )
        loaded = Loaded(kept.sha256, kept.mime, kept.width, kept.height, kept.data, when)
        return Decoded(kept.prepared, loaded)

    def prepare(image: PILImage) -> dict[str, torch.Tensor]:
        return {m.id: e.preprocess(image) for m, e in models}

    def commit(chunk: Chunk) -> None:
        errors = [{"path": f.item.path, "error": f.error} for f in chunk.failures]
        with ctx.sessions.begin() as session:
            fresh = _store(ctx, session, chunk, models, origin)
            jobs.commit_progress(
                session,
                lease,
                cursor=chunk.last_key,
                done=len(chunk.keys),
                failed=len(chunk.failures),
                errors=errors,
                counts={"imported": len(fresh), "duplicates": len(chunk.keys) - len(fresh)},
            )
        rt, serving = ctx.runtime, models[0][0].id
        if rt is not None and rt.index is not None and fresh:
            ids = np.array([i for i, _ in fresh], dtype=np.int64)
            rt.index.add(ids, chunk.matrix(serving)[[p for _, p in fresh]], model_id=serving)

    embedders = {m.id: e.embed_tensors for m, e in models}
    return Stages(source, decode, embedders, commit, after=lease.cursor)


def _procedure(session: Session, origin: str, entry: Entry) -> Procedure:
    q = sa.select(Procedure).where(
        Procedure.source == origin, Procedure.external_id == entry.procedure
    )
    proc = session.scalar(q)
    if proc is None:
        proc = Procedure(
            source=origin,
            external_id=entry.procedure,
            kind=entry.kind,
            room=entry.room or None,
            operator=entry.operator or None,
        )
        session.add(proc)
        session.flush()
    else:  # fill an empty code; a different stored one is kept
        if entry.room and proc.room is None:
            proc.room = entry.room
        if entry.operator and proc.operator is None:
            proc.operator = entry.operator
    return proc


def _store(
    ctx: JobContext,
    session: Session,
    chunk: Chunk,
    models: list[tuple[Model, Embedder]],
    origin: str,
) -> list[tuple[int, int]]:
    """Images new to their procedure: file, row, one vector per model, label; (id, position)."""
    matrices = {m.id: chunk.matrix(m.id) for m, _ in models}
    fresh: list[tuple[int, int]] = []
    for pos, (entry, loaded) in enumerate(zip(chunk.items, chunk.metas, strict=True)):
        proc = _procedure(session, origin, entry)
        dup = session.scalar(
            sa.select(Image.id).where(
                Image.procedure_id == proc.id,
                Image.sha256 == loaded.sha256,
                Image.deleted_at.is_(None),
            )
        )
        if dup is not None:
            continue
        ctx.storage.put(loaded.data, loaded.mime)
        img = Image(
            procedure_id=proc.id,
            sha256=loaded.sha256,
            storage_key=storage_key(loaded.sha256, loaded.mime),
            mime=loaded.mime,
            width=loaded.width,
            height=loaded.height,
            bytes=len(loaded.data),
            captured_at=loaded.captured_at,
        )
        session.add(img)
        session.flush()
        for mid, mat in matrices.items():
            session.add(Embedding(image_id=img.id, model_id=mid, vector=vectors.to_bytes(mat[pos])))
        if entry.label:
            session.add(Label(image_id=img.id, label=entry.label, source="manual"))
        fresh.append((img.id, pos))
    return fresh
