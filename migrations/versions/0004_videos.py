"""Procedure videos: the video, its per-frame table, the stills picked from it, its segments.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("procedure_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("container", sa.String(32), nullable=False),
        sa.Column("codec", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Double(), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("rotation", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("origin", sa.JSON(), nullable=False),
        sa.Column("file_key", sa.String(256), nullable=True),
        sa.Column("retain_until", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("model_id", sa.String(64), nullable=True),
        sa.Column("analysis", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["procedure_id"], ["procedures.id"], name="fk_videos_procedure_id_procedures"
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_videos_job_id_jobs"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_videos_model_id_models"),
        sa.PrimaryKeyConstraint("id", name="pk_videos"),
        sa.UniqueConstraint("procedure_id", "sha256", name="uq_videos_procedure_id_sha256"),
    )
    op.create_index("ix_videos_procedure_id", "videos", ["procedure_id"])
    op.create_index("ix_videos_status", "videos", ["status"])

    op.create_table(
        "video_frames",
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("t_ms", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=True),
        sa.Column("quality", sa.Double(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["video_id"], ["videos.id"], ondelete="CASCADE", name="fk_video_frames_video_id_videos"
        ),
        sa.PrimaryKeyConstraint("video_id", "index", name="pk_video_frames"),
    )

    op.create_table(
        "video_images",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("requirement", sa.String(128), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("t_ms", sa.Integer(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("quality", sa.Double(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("review", sa.String(16), nullable=False),
        sa.Column("reviewed_by", sa.Uuid(), nullable=True),
        sa.Column("reviewed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], ondelete="CASCADE", name="fk_video_images_image_id_images"
        ),
        sa.ForeignKeyConstraint(
            ["video_id"], ["videos.id"], ondelete="CASCADE", name="fk_video_images_video_id_videos"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_video_images"),
        sa.UniqueConstraint(
            "video_id", "requirement", "rank", name="uq_video_images_video_id_requirement_rank"
        ),
    )
    op.create_index("ix_video_images_image_id", "video_images", ["image_id"])
    op.create_index("ix_video_images_video_id", "video_images", ["video_id"])

    op.create_table(
        "video_segments",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("start_ms", sa.Integer(), nullable=False),
        sa.Column("end_ms", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            ondelete="CASCADE",
            name="fk_video_segments_video_id_videos",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_video_segments_model_id_models"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_video_segments"),
        sa.UniqueConstraint(
            "video_id", "model_id", "start_ms", name="uq_video_segments_video_id_model_id_start_ms"
        ),
    )
    op.create_index("ix_video_segments_video_id", "video_segments", ["video_id"])


def downgrade() -> None:
    op.drop_index("ix_video_segments_video_id", table_name="video_segments")
    op.drop_table("video_segments")
    op.drop_index("ix_video_images_video_id", table_name="video_images")
    op.drop_index("ix_video_images_image_id", table_name="video_images")
    op.drop_table("video_images")
    op.drop_table("video_frames")
    op.drop_index("ix_videos_status", table_name="videos")
    op.drop_index("ix_videos_procedure_id", table_name="videos")
    op.drop_table("videos")
