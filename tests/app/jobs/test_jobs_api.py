"""REST: POST /v1/jobs/reindex runs in the server, which flips in-process; GET shows progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.api.routes import jobs as jobs_routes
from app.main import create_app
from app.services import bulk_import, keys
from app.services.job_exec import JobContext
from app.settings import Settings
from tests.timing import scaled


def test_reindex_over_rest_flips_the_serving_model(
    make_settings: Callable[[str], Settings],
    sqlite_url: str,
    synthetic_archive: Path,
    bundle_b: Path,
    tmp_path: Path,
) -> None:
    settings = make_settings(sqlite_url)
    ctx = JobContext.from_settings(settings)
    folder = tmp_path / "few"
    folder.mkdir()
    for f in sorted(synthetic_archive.rglob("*.jpg"))[::25]:
        (folder / f.name).write_bytes(f.read_bytes())
    seed = bulk_import.start_import(ctx, {"dir": str(folder)})
    assert bulk_import.run_import(ctx, seed.id) == "completed"
    with ctx.sessions.begin() as s:
        _, admin = keys.create_key(s, "admin", ["admin"])
        _, searcher = keys.create_key(s, "qa", ["search"])

    app = create_app(settings, with_ui=False)
    app.include_router(jobs_routes.router)
    with TestClient(app) as client:
        rt = app.state.runtime
        old = rt.index.model_id
        auth = {"Authorization": f"Bearer {admin}"}
        denied = client.get("/v1/jobs", headers={"Authorization": f"Bearer {searcher}"})
        assert denied.status_code == 403
        started = client.post("/v1/jobs/reindex", json={"bundle": str(bundle_b)}, headers=auth)
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        end = time.monotonic() + scaled(120)
        while (body := client.get(f"/v1/jobs/{job_id}", headers=auth).json())["status"] in (
            "pending",
            "running",
        ):
            assert time.monotonic() < end, body
        assert body["status"] == "completed", body
        assert (body["done"], body["failed"], body["total"]) == (20, 0, 20)
        assert body["rate"] > 0 and body["eta_s"] is None
        # the job commits "completed" and the flip together; the in-process swap follows it
        while rt.index.model_id == old:
            assert time.monotonic() < end, "the server did not switch to the new model"
            time.sleep(0.05)
        assert rt.index.model_id == body["model_id"] != old
        assert len(rt.index) == 20
        listed = client.get("/v1/jobs", headers=auth).json()
        assert [j["kind"] for j in listed] == ["reindex", "import"]
        again = client.post("/v1/jobs/reindex", json={"bundle": str(bundle_b)}, headers=auth)
        assert again.status_code == 409 and again.json()["code"] == "reindex_refused"
        with rt.sessions() as s:
            n = s.scalar(sa.text("select count(*) from embeddings where model_id = :m"),
                         {"m": body["model_id"]})  # fmt: skip
        assert n == 20 and np.all(rt.index.index.ids() > 0)
