"""Index labels by (source, id): the reference gallery's fingerprint without a table scan.

Every ingest asks for the count and newest id of the `reference` labels (app/documentation/
references.py). Without this index that is a scan of every label: with one predicted label
per photo, ~57 ms per ingest at 1M photos on SQLite; with it, a range over the references.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_labels_source_id", "labels", ["source", "id"])


def downgrade() -> None:
    op.drop_index("ix_labels_source_id", table_name="labels")
