"""Bulk import goes through the shared decode guard: a file that makes Pillow raise anything
(here TypeError from a TIFF's frame count, and a batch of mutated files) is listed in the
job's errors with its decode code, the job completes and nothing of it is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from app.db.models import Image
from app.services import bulk_import, jobs
from app.services.job_exec import JobContext
from embedder.errors import DECODE_CODES
from tests.reliability import hostile, mutate

SEEDS = range(3_000_000, 3_000_040)  # the other fuzzers use 1_000_000+ and 2_000_000+
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF" etc.
EXT = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


def test_import_lists_undecodable_files_and_stores_only_good_ones(
    job_ctx: JobContext, tmp_path: Path
) -> None:
    folder = tmp_path / "archive" / "proc-a"
    folder.mkdir(parents=True)
    (folder / "frame-count.tif").write_bytes(hostile.tiff_unreadable_frame_count())
    (folder / "good.png").write_bytes(mutate.seed_files()["png_rgb"][1])
    for n in SEEDS:
        name, data, _ = mutate.case(n)
        (folder / f"m{n}.{EXT[mutate.seed_files()[name][0]]}").write_bytes(data)
    job = bulk_import.start_import(job_ctx, {"dir": str(folder.parent), "kind": "colonoscopy"})
    assert bulk_import.run_import(job_ctx, job.id) == "completed"

    with job_ctx.sessions() as s:
        info = jobs.describe(jobs.get(s, job.id))
        bad = {Path(e["path"]).name: e["error"] for e in info["errors"]}
        stored = s.scalar(sa.select(sa.func.count()).select_from(Image))
    assert bad["frame-count.tif"].startswith("corrupt_image:"), bad["frame-count.tif"]
    assert "good.png" not in bad
    assert all(err.split(":")[0] in DECODE_CODES for err in bad.values()), bad
    assert info["done"] + info["failed"] == len(SEEDS) + 2 and info["failed"] == len(bad)
    assert 1 <= stored <= info["done"]  # duplicates (same mutated bytes) are not stored twice
    assert len(list(job_ctx.storage.iter_files())) == stored
