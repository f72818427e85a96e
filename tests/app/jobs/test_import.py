"""Bulk import: dedup by hash, corrupt files recorded (never fatal), manifest rows, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa

from app.db.models import Embedding, Image, Label, Procedure
from app.services import bulk_import, jobs
from app.services.job_exec import JobContext


def _folder(src: Path, dst: Path) -> Path:
    """Two procedures of SYNTHETIC photos, a duplicate and three broken files."""
    files = sorted(src.rglob("*.jpg"))
    (dst / "proc-a").mkdir(parents=True)
    (dst / "proc-b").mkdir()
    for f in files[:6]:
        shutil.copy(f, dst / "proc-a" / f.name)
    for f in files[100:104]:
        shutil.copy(f, dst / "proc-b" / f.name)
    shutil.copy(files[0], dst / "proc-a" / "same-bytes-again.jpg")
    (dst / "proc-a" / "truncated.jpg").write_bytes(files[1].read_bytes()[:300])
    (dst / "proc-b" / "noise.jpg").write_bytes(b"not an image at all" * 10)
    (dst / "proc-b" / "empty.png").write_bytes(b"")
    (dst / "proc-b" / "notes.txt").write_text("ignored: not an image extension")
    return dst


def test_import_with_corrupt_files_finishes_and_lists_them(
    job_ctx: JobContext, synthetic_archive: Path, tmp_path: Path
) -> None:
    folder = _folder(synthetic_archive, tmp_path / "archive")
    job = bulk_import.start_import(job_ctx, {"dir": str(folder), "kind": "colonoscopy"})
    seen: list[tuple[int, int, int]] = []
    assert bulk_import.run_import(job_ctx, job.id, lambda *a: seen.append(a)) == "completed"

    with job_ctx.sessions() as s:
        info = jobs.describe(jobs.get(s, job.id))
        assert info["status"] == "completed"
        assert (info["total"], info["done"], info["failed"]) == (14, 11, 3)
        assert info["params"]["counts"] == {"imported": 10, "duplicates": 1}
        bad = {Path(e["path"]).name: e["error"] for e in info["errors"]}
        assert set(bad) == {"truncated.jpg", "noise.jpg", "empty.png"}
        assert bad["empty.png"].startswith("empty_file")
        assert bad["noise.jpg"].startswith("unsupported_type")
        assert s.scalar(sa.select(sa.func.count()).select_from(Image)) == 10
        procs = s.scalars(sa.select(Procedure.external_id).order_by(Procedure.external_id))
        assert list(procs) == ["proc-a", "proc-b"]
        model = s.scalar(sa.text("select id from models where active"))
        per_image = s.execute(
            sa.select(Embedding.image_id, sa.func.count()).group_by(Embedding.image_id)
        ).all()
        assert len(per_image) == 10 and all(n == 1 for _, n in per_image)
        assert {m for (m,) in s.execute(sa.select(Embedding.model_id).distinct())} == {model}
    assert seen[-1] == (11, 3, 14)
    assert len(list(job_ctx.storage.iter_files())) == 10

    # the same folder again: everything is a duplicate, nothing new is stored
    again = bulk_import.start_import(job_ctx, {"dir": str(folder), "kind": "colonoscopy"})
    assert bulk_import.run_import(job_ctx, again.id) == "completed"
    with job_ctx.sessions() as s:
        assert jobs.get(s, again.id).params["counts"] == {"imported": 0, "duplicates": 11}
        assert s.scalar(sa.select(sa.func.count()).select_from(Image)) == 10


def test_manifest_rows_set_procedure_kind_time_label(
    job_ctx: JobContext, synthetic_archive: Path, tmp_path: Path
) -> None:
    files = sorted(synthetic_archive.rglob("*.jpg"))[:3]
    manifest = tmp_path / "archive.csv"
    lines = ["path,procedure_external_id,procedure_kind,captured_at,label"]
    lines.append(f"{files[0]},P-1,upper_gi,2024-05-01T10:00:00Z,z-line")
    lines.append(f"{files[1]},P-1,upper_gi,,")
    lines.append(f"{files[2]},P-2,gastroscopy,,")  # unknown kind: a per-row error
    lines.append("missing.jpg,P-2,colonoscopy,,")  # relative to the manifest; does not exist
    manifest.write_text("\n".join(lines) + "\n")
    job = bulk_import.start_import(job_ctx, {"manifest": str(manifest)})
    assert bulk_import.run_import(job_ctx, job.id) == "completed"
    with job_ctx.sessions() as s:
        job = jobs.get(s, job.id)
        assert (job.done, job.failed) == (2, 2)
        errors = {Path(e["path"]).name: e["error"] for e in job.params["errors"]}
        assert "gastroscopy" in errors[files[2].name]
        assert errors["missing.jpg"].startswith("FileNotFoundError")
        proc = s.scalar(sa.select(Procedure).where(Procedure.external_id == "P-1"))
        assert proc.kind == "upper_gi"
        images = s.scalars(sa.select(Image).order_by(Image.id)).all()
        assert images[0].captured_at is not None and images[0].captured_at.year == 2024
        assert s.scalars(sa.select(Label.label)).all() == ["z-line"]


def test_manifest_room_and_operator_codes(
    job_ctx: JobContext, synthetic_archive: Path, tmp_path: Path
) -> None:
    files = sorted(synthetic_archive.rglob("*.jpg"))[:4]
    manifest = tmp_path / "codes.csv"
    lines = ["path,procedure_external_id,procedure_kind,room,operator"]
    lines.append(f"{files[0]},P-1,upper_gi,room-1,")
    lines.append(f"{files[1]},P-1,upper_gi,room-9,op-4")  # fills operator, room kept
    lines.append(f"{files[2]},P-2,upper_gi,,John Smith")  # a name: a per-row error
    lines.append(f"{files[3]},P-3,upper_gi,,")
    manifest.write_text("\n".join(lines) + "\n")
    job = bulk_import.start_import(job_ctx, {"manifest": str(manifest)})
    assert bulk_import.run_import(job_ctx, job.id) == "completed"
    with job_ctx.sessions() as s:
        job = jobs.get(s, job.id)
        assert (job.done, job.failed) == (3, 1)
        (error,) = job.params["errors"]
        assert "pseudonymous" in error["error"] and "John" not in error["error"]
        procs = {p.external_id: p for p in s.scalars(sa.select(Procedure))}
        assert (procs["P-1"].room, procs["P-1"].operator) == ("room-1", "op-4")
        assert "P-2" not in procs
        assert (procs["P-3"].room, procs["P-3"].operator) == (None, None)
