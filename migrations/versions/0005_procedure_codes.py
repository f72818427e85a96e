"""Pseudonymous room and operator codes on procedures (quality reporting; never names).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-16
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("procedures") as batch:
        batch.add_column(sa.Column("room", sa.String(64), nullable=True))
        batch.add_column(sa.Column("operator", sa.String(64), nullable=True))
    op.create_index("ix_procedures_room_performed_at", "procedures", ["room", "performed_at"])
    op.create_index(
        "ix_procedures_operator_performed_at", "procedures", ["operator", "performed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_procedures_operator_performed_at", table_name="procedures")
    op.drop_index("ix_procedures_room_performed_at", table_name="procedures")
    with op.batch_alter_table("procedures") as batch:
        batch.drop_column("operator")
        batch.drop_column("room")
