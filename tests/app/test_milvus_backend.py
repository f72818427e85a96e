"""The service on ENDOSEEK_VECTOR_BACKEND=milvus (a Milvus Lite file; BACKEND_MATRIX in
conftest.py also runs this module on FAISS): filtered searches compiled to allowed ids are
exact (equal to brute force over the database's vectors), the over-fetch fallback agrees,
a restart reconciles the collection with the database, the alias follows the active model,
and `endoseek index rebuild|status` work."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.db.models import Image, Label
from app.main import create_app
from app.services import vectors
from app.services.search import SearchFilters, SearchService
from app.settings import Settings
from tests.app.conftest import jpeg_bytes

N_PER_PROCEDURE = 12


def _ingest(client: TestClient, headers: dict, synthetic_images: list) -> list[str]:
    """Three procedures of generated photos (two kinds); returns the procedure ids."""
    pids = []
    for p, kind in enumerate(("colonoscopy", "colonoscopy", "other")):
        body = {"source": "milvus", "external_id": f"p{p}", "kind": kind}
        r = client.post("/v1/procedures", json=body, headers=headers["ingest"])
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        files = []
        for i in range(N_PER_PROCEDURE):
            img = synthetic_images[(i + p) % len(synthetic_images)].copy()
            img.putpixel((80 + i, 80 + p), (i * 20 % 256, p * 90, 7))  # centre: inside the FOV
            files.append(("files", (f"{i}.jpg", jpeg_bytes(img, quality=92), "image/jpeg")))
        r = client.post(f"/v1/procedures/{pid}/images", files=files, headers=headers["ingest"])
        assert r.status_code == 201, r.text
        pids.append(pid)
    return pids


def _brute_force(rt, session, query: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    ids, vecs = [], []
    for chunk_ids, chunk_vecs in vectors.vectors_for(
        session, rt.index.model_id, rt.index.dim, allowed
    ):
        ids.extend(chunk_ids.tolist())
        vecs.append(chunk_vecs)
    scores = np.vstack(vecs) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[i] for i in order]


def test_backend_in_use_and_filtered_search_is_exact(
    client: TestClient, headers: dict, synthetic_images, settings: Settings, vector_backend: str
) -> None:
    pids = _ingest(client, headers, synthetic_images)
    rt = client.app.state.runtime
    assert rt.index.backend == ("faiss" if vector_backend == "faiss" else "milvus")
    with rt.sessions() as s:
        rows = s.execute(sa.select(Image.id, Image.procedure_id).order_by(Image.id)).all()
    assert len(rt.index) == len(rows) >= 2 * N_PER_PROCEDURE
    with rt.sessions() as s:
        labelled = [r.id for r in rows[::3]]
        s.add_all(Label(image_id=i, label="polyp", source="manual") for i in labelled)
        s.commit()
    svc = SearchService(rt)
    of = {pid: [r.id for r in rows if str(r.procedure_id) == pid] for pid in pids}
    cases = [
        (SearchFilters(procedure_id=uuid.UUID(pids[1])), of[pids[1]]),
        (SearchFilters(procedure_kind="other"), of[pids[2]]),
        (SearchFilters(label="polyp"), labelled),
    ]
    with rt.sessions() as s:
        for query_id in (rows[0].id, rows[-1].id):
            query = vectors.vector_of(s, query_id, rt.index.model_id, rt.index.dim)
            for filters, allowed in cases:
                hits = svc.search(s, query, 5, filters)
                expected = _brute_force(rt, s, query, np.array(allowed), 5)
                assert [h.image.id for h in hits] == expected, filters
                assert all(h.image.id in allowed for h in hits)


def test_overfetch_fallback_agrees_with_allowed_ids(
    client: TestClient, headers: dict, synthetic_images, settings: Settings
) -> None:
    pids = _ingest(client, headers, synthetic_images)
    rt = client.app.state.runtime
    exact = SearchService(rt)
    before = rt.settings
    with rt.sessions() as s:
        first = s.scalar(sa.select(sa.func.min(Image.id)))
        query = vectors.vector_of(s, first, rt.index.model_id, rt.index.dim)
        filters = SearchFilters(procedure_id=uuid.UUID(pids[2]))
        want = [h.image.id for h in exact.search(s, query, 4, filters, exclude_image_id=first)]
        rt.settings = before.model_copy(update={"search_filter_max_ids": 2})  # the fallback
        try:
            got = [h.image.id for h in exact.search(s, query, 4, filters, exclude_image_id=first)]
        finally:
            rt.settings = before
    assert got == want and len(want) == 4


def test_restart_reconciles_alias_follows_and_index_cli(
    settings: Settings,
    headers: dict,
    synthetic_images,
    vector_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with TestClient(create_app(settings, with_ui=False)) as client:
        _ingest(client, headers, synthetic_images)
        rt = client.app.state.runtime
        model_id = rt.index.model_id
    # while stopped: one image deleted, so the collection holds one id too many
    with rt.sessions() as s:
        gone = s.scalar(sa.select(sa.func.max(Image.id)))
        s.execute(sa.update(Image).where(Image.id == gone).values(deleted_at=sa.func.now()))
        s.commit()
    with TestClient(create_app(settings, with_ui=False)) as client:
        rt = client.app.state.runtime
        with rt.sessions() as s:
            live = vectors.live_ids(s, model_id)
        np.testing.assert_array_equal(rt.index.index.ids(), live)
        assert gone not in live and len(live) >= 2 * N_PER_PROCEDURE
        if rt.index.backend == "milvus":
            from app.services.index_service import milvus_generations, milvus_options

            assert milvus_generations(**milvus_options(settings)).is_active(model_id)

    # the CLI, on the same settings through the environment (the service is stopped)
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "INDEX_DIR": str(settings.index_dir),
        "STORAGE_DIR": str(settings.storage_dir),
        "INDEX_DEVICE": "cpu",
    }.items():
        monkeypatch.setenv(f"ENDOSEEK_{name}", value)
    from app.cli.main import app
    from app.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        done = runner.invoke(app, ["index", "rebuild"])
        assert done.exit_code == 0, done.output
        assert f"rebuilt {len(live)} vectors" in done.output
        state = runner.invoke(app, ["index", "status"])
        assert state.exit_code == 0, state.output
        status = json.loads(state.output)
        refused = runner.invoke(app, ["index", "drop", "--model", model_id[:12]])
        assert refused.exit_code == 2  # the active model (and FAISS has no collections)
    finally:
        get_settings.cache_clear()
    assert status["model"] == model_id and status["database_vectors"] == len(live)
    if vector_backend == "faiss":
        assert status["snapshot_vectors"] == len(live)
    else:
        assert status["in_sync"] is True and status["index_vectors"] == len(live)
        assert status["alias_here"] is True
        assert "token" not in json.dumps(status).lower()
