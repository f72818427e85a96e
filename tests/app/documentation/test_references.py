"""The reference gallery's per-ingest fingerprint stays an index lookup as archives grow."""

from __future__ import annotations

import sqlalchemy as sa

from app.db import migrate
from app.db.session import create_db_engine
from app.documentation import references


def test_fingerprint_reads_an_index_range_not_every_label(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    engine = create_db_engine(sqlite_url)
    captured: list[tuple[str, tuple]] = []

    def keep(conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001
        if "count(labels.id)" in statement:
            captured.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", keep)
    with sa.orm.Session(engine) as session:
        assert references.fingerprint(session) == (0, 0)
        ((sql, params),) = captured
        with engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            plan = " ".join(
                str(row[-1]) for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            )
    engine.dispose()
    assert "SEARCH labels USING COVERING INDEX ix_labels_source_id (source=?)" in plan, plan
