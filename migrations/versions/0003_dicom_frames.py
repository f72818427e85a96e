"""DICOM provenance of photos: Study, Series, SOP Instance and SOP Class UIDs per frame.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dicom_frames",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            ondelete="CASCADE",
            name="fk_dicom_frames_image_id_images",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dicom_frames"),
        sa.UniqueConstraint(
            "sop_instance_uid", "frame", name="uq_dicom_frames_sop_instance_uid_frame"
        ),
    )
    op.create_index("ix_dicom_frames_image_id", "dicom_frames", ["image_id"])
    op.create_index("ix_dicom_frames_study_uid", "dicom_frames", ["study_uid"])


def downgrade() -> None:
    op.drop_index("ix_dicom_frames_study_uid", table_name="dicom_frames")
    op.drop_index("ix_dicom_frames_image_id", table_name="dicom_frames")
    op.drop_table("dicom_frames")
