"""Upgrade drill: a database filled at the first migration upgrades to head with nothing lost.

Rows of every table are written with plain Core statements against the schema as it is at
the first revision (reflected, so a later migration never changes what is written), typed
with the models' column types where the column exists (UUIDs, aware datetimes, JSON). After
`upgrade head` every row and value reads back the same, and the service's own code still
works on them (a stored key authenticates, new rows get fresh ids).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.models import Base, Label
from app.db.session import create_db_engine
from app.services import keys

T0 = datetime(2026, 11, 23, 9, 15, 0, 123456, tzinfo=UTC)
KEY = f"{keys.KEY_PREFIX}_0a1b2c3d_drill-secret-drill-secret-drill-secret"
# tables in foreign-key order; every table of the first revision must be here
ORDER = (
    "procedures",
    "models",
    "images",
    "embeddings",
    "labels",
    "jobs",
    "api_keys",
    "audit_events",
)


def _script(url: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config(url))


def _typed(reflected: sa.Table) -> sa.Table:
    """The table's columns at this revision, with the models' types where they have one."""
    model = Base.metadata.tables.get(reflected.name)
    cols = []
    for c in reflected.columns:
        kind = model.c[c.name].type if model is not None and c.name in model.c else c.type
        cols.append(sa.Column(c.name, kind, primary_key=c.primary_key))
    return sa.Table(reflected.name, sa.MetaData(), *cols)


def _vector(seed: int) -> bytes:
    return np.random.default_rng(seed).standard_normal(8).astype("<f4").tobytes()


def _fill(conn: sa.Connection, tables: dict[str, sa.Table]) -> dict[str, list[dict[str, Any]]]:
    """Insert rows covering each column (NULLs and values, unicode, JSON, bytes); returns them
    with their generated ids."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in ORDER}

    def put(table: str, /, **values: Any) -> Any:
        result = conn.execute(tables[table].insert().values(**values))
        pk = [c.name for c in tables[table].primary_key.columns]
        if len(pk) == 1 and pk[0] not in values:
            values[pk[0]] = result.inserted_primary_key[0]
        rows[table].append(values)
        return values.get(pk[0]) if len(pk) == 1 else None

    p1, p2, key_id, staff = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    put(
        "procedures",
        id=p1,
        source="endo-room-3",
        external_id="2026-11-23-0042",
        kind="colonoscopy",
        performed_at=T0,
        created_at=T0,
    )
    put(
        "procedures",
        id=p2,
        source="Gastro Süd",
        external_id="ünïcode/ß-7",
        kind="other",
        performed_at=None,
        created_at=T0 + timedelta(seconds=1),
    )
    m1, m2 = "a" * 64, "b" * 64
    put(
        "models",
        id=m1,
        name="baseline",
        dim=8,
        config={"branches": [{"name": "hist", "bins": 8}]},
        metrics={"recall@1": 0.5},
        bundle_path="/data/bundles/a",
        active=True,
        created_at=T0,
    )
    put(
        "models",
        id=m2,
        name="dual",
        dim=8,
        config={},
        metrics={},
        bundle_path=None,
        active=False,
        created_at=T0 + timedelta(hours=1),
    )
    images = []
    for i, (pid, deleted) in enumerate(((p1, None), (p1, None), (p2, T0 + timedelta(days=1)))):
        sha = f"{i:02x}" * 32
        images.append(put(
            "images", uid=uuid.uuid4(), procedure_id=pid, sha256=sha,
            storage_key=f"{sha[:2]}/{sha[2:4]}/{sha}.jpg", mime="image/jpeg", width=640 + i,
            height=480, bytes=10_000_000_000 + i, captured_at=None if i else T0,
            created_at=T0 + timedelta(minutes=i), deleted_at=deleted,
        ))  # fmt: skip
    for n, image_id in enumerate(images[:2]):
        put("embeddings", image_id=image_id, model_id=m1, vector=_vector(n), created_at=T0)
    put("embeddings", image_id=images[0], model_id=m2, vector=_vector(9), created_at=T0)
    put(
        "labels",
        image_id=images[0],
        label="cecum",
        source="manual",
        score=None,
        model_id=None,
        created_by=staff,
        created_at=T0,
    )
    put(
        "labels",
        image_id=images[0],
        label="ileum",
        source="reference",
        score=None,
        model_id=None,
        created_by=staff,
        created_at=T0,
    )
    put(
        "labels",
        image_id=images[1],
        label="z-line",
        source="predicted",
        score=0.8125,
        model_id=m1,
        created_by=None,
        created_at=T0,
    )
    put(
        "jobs",
        id=uuid.uuid4(),
        kind="reindex",
        status="done",
        params={"bundle": "/b", "batch": 32},
        total=2,
        done=2,
        failed=0,
        cursor=images[1],
        model_id=m2,
        error=None,
        heartbeat_at=T0,
        created_at=T0,
        updated_at=T0,
        started_at=T0,
        finished_at=T0,
    )
    put(
        "jobs",
        id=uuid.uuid4(),
        kind="import",
        status="failed",
        params={},
        total=0,
        done=0,
        failed=1,
        cursor=None,
        model_id=None,
        error="disk full\nline 2",
        heartbeat_at=None,
        created_at=T0,
        updated_at=T0,
        started_at=None,
        finished_at=None,
    )
    put(
        "api_keys",
        id=key_id,
        name="drill",
        prefix="0a1b2c3d",
        hash=keys.hash_key(KEY),
        scopes=["ingest", "search"],
        created_at=T0,
        revoked_at=None,
        last_used_at=None,
    )
    put(
        "api_keys",
        id=uuid.uuid4(),
        name="old",
        prefix="deadbeef",
        hash="0" * 64,
        scopes=["admin"],
        created_at=T0,
        revoked_at=T0,
        last_used_at=T0,
    )
    put(
        "audit_events",
        key_id=key_id,
        action="image.view",
        target=str(uuid.uuid4()),
        at=T0,
        detail={"k": 10, "nested": {"ok": True}},
    )
    put("audit_events", key_id=None, action="key.create", target=None, at=T0, detail={})
    return rows


def _pk_order(table: sa.Table) -> list[sa.Column]:
    return list(table.primary_key.columns)


def _drill(url: str) -> None:
    script = _script(url)
    first = script.get_base()
    migrate.upgrade(url, first)
    engine = create_db_engine(url)
    try:
        reflected = sa.MetaData()
        reflected.reflect(engine)
        assert set(reflected.tables) - {"alembic_version"} == set(ORDER)
        typed = {name: _typed(reflected.tables[name]) for name in ORDER}
        with engine.begin() as conn:
            rows = _fill(conn, typed)
        assert all(rows.values())
    finally:
        engine.dispose()

    migrate.upgrade(url, "head")

    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == (
                script.get_current_head()
            )
            for name in ORDER:
                head = Base.metadata.tables[name]  # the table as the service reads it now
                written = typed[name]
                missing = {c.name for c in written.columns} - set(head.c.keys())
                assert not missing, (name, missing)
                cols = [head.c[c.name] for c in written.columns]
                order = [head.c[c.name] for c in _pk_order(written)]
                got = [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(*order))]
                pk = [c.name for c in _pk_order(written)]
                want = sorted(rows[name], key=lambda r: tuple(str(r[k]) for k in pk))
                got = sorted(got, key=lambda r: tuple(str(r[k]) for k in pk))
                assert got == want, name
        with Session(engine) as session:
            principal = keys.authenticate(session, KEY)
            assert principal is not None and principal.scopes == {"ingest", "search"}
            image_id = rows["images"][0]["id"]
            session.add(Label(image_id=image_id, label="pylorus", source="manual"))
            session.commit()  # a new row gets a fresh id after the upgrade
            ids = session.scalars(sa.select(Label.id).order_by(Label.id)).all()
            assert len(ids) == len(set(ids)) == 4
    finally:
        engine.dispose()


def test_sqlite_filled_at_first_revision_upgrades_with_nothing_lost(sqlite_url: str) -> None:
    _drill(sqlite_url)


@pytest.mark.postgres
def test_postgres_filled_at_first_revision_upgrades_with_nothing_lost(fresh_pg_url: str) -> None:
    _drill(fresh_pg_url)
