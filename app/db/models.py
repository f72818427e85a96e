"""SQLAlchemy 2 models: the database is the source of truth for images, vectors and keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.db.types import BigIntPK, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PROCEDURE_KINDS = ("upper_gi", "colonoscopy", "other")
# a procedure's room / operator code: a short pseudonymous token (no spaces), never a name
PROCEDURE_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
PROCEDURE_CODE_RULE = (
    "codes must be pseudonymous: 1-32 letters, digits, '.', '_' or '-' starting with a letter "
    "or digit (no spaces, never a name)"
)
LABEL_SOURCES = ("manual", "reference", "predicted")


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (stable migrations)."""

    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON()}


class Procedure(Base):
    """One endoscopy procedure; (source, external_id) is the device's own identifier."""

    __tablename__ = "procedures"
    __table_args__ = (
        sa.UniqueConstraint("source", "external_id"),
        sa.Index(None, "kind"),
        sa.Index(None, "performed_at"),
        # quality reporting per room / operator code over a period
        sa.Index(None, "room", "performed_at"),
        sa.Index(None, "operator", "performed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    source: Mapped[str] = mapped_column(sa.String(128))
    external_id: Mapped[str] = mapped_column(sa.String(256))
    kind: Mapped[str] = mapped_column(sa.String(32), default="other")
    performed_at: Mapped[datetime | None]
    # pseudonymous codes (PROCEDURE_CODE_PATTERN) for quality reporting; never names
    room: Mapped[str | None] = mapped_column(sa.String(64))
    operator: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="procedure")


class Image(Base):
    """A stored photo; `id` is the internal vector id, `uid` the public one."""

    __tablename__ = "images"
    __table_args__ = (
        sa.Index(None, "procedure_id"),
        sa.Index(None, "sha256"),
        sa.Index(None, "created_at"),
        sa.Index(None, "captured_at"),
        # one live copy of the same bytes per procedure; a deleted image may be uploaded again
        sa.Index(
            "uq_images_live_procedure_sha256",
            "procedure_id",
            "sha256",
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    uid: Mapped[uuid.UUID] = mapped_column(sa.Uuid, unique=True, default=uuid.uuid4)
    procedure_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("procedures.id"))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    storage_key: Mapped[str] = mapped_column(sa.String(128))
    mime: Mapped[str] = mapped_column(sa.String(64))
    width: Mapped[int]
    height: Mapped[int]
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    captured_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]

    procedure: Mapped[Procedure] = relationship(back_populates="images")
    labels: Mapped[list[Label]] = relationship(back_populates="image")


class DicomFrame(Base):
    """Where a photo came from in DICOM: one row per (SOP instance, frame).

    Only UIDs are kept (never patient attributes): they join the photo to the PACS's study and
    make a re-sent instance a no-op. Several rows may name one image (the same pixels sent
    under two UIDs)."""

    __tablename__ = "dicom_frames"
    __table_args__ = (
        sa.UniqueConstraint("sop_instance_uid", "frame"),
        sa.Index(None, "image_id"),
        sa.Index(None, "study_uid"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("images.id", ondelete="CASCADE")
    )
    study_uid: Mapped[str] = mapped_column(sa.String(64))
    series_uid: Mapped[str] = mapped_column(sa.String(64))
    sop_instance_uid: Mapped[str] = mapped_column(sa.String(64))
    sop_class_uid: Mapped[str] = mapped_column(sa.String(64))
    frame: Mapped[int] = mapped_column(default=1)  # 1-based, as DICOM counts frames
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Model(Base):
    """An embedding model (bundle); exactly one row is active and drives the live index."""

    __tablename__ = "models"
    __table_args__ = (
        sa.Index(
            "uq_models_single_active",
            "active",
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # bundle digest
    name: Mapped[str] = mapped_column(sa.String(200))
    dim: Mapped[int]
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    bundle_path: Mapped[str | None] = mapped_column(sa.String(1024))
    active: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    """One image's vector from one model, as little-endian float32 bytes."""

    __tablename__ = "embeddings"
    __table_args__ = (sa.Index(None, "model_id", "image_id"),)

    image_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Label(Base):
    """A label on an image: set by staff, marked as reference, or predicted by a model."""

    __tablename__ = "labels"
    __table_args__ = (
        sa.Index(None, "image_id"),
        sa.Index(None, "label", "source"),
        # the reference gallery's fingerprint (count and newest id of one source) per ingest
        sa.Index(None, "source", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("images.id", ondelete="CASCADE")
    )
    label: Mapped[str] = mapped_column(sa.String(128))
    source: Mapped[str] = mapped_column(sa.String(16), default="manual")
    score: Mapped[float | None]
    model_id: Mapped[str | None] = mapped_column(sa.ForeignKey("models.id"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    image: Mapped[Image] = relationship(back_populates="labels")


class Job(Base):
    """A resumable batch job (re-index, import); `cursor` is the last image id done."""

    __tablename__ = "jobs"
    __table_args__ = (sa.Index(None, "status"), sa.Index(None, "kind"))

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    done: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    failed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    cursor: Mapped[int | None] = mapped_column(sa.BigInteger)
    model_id: Mapped[str | None] = mapped_column(sa.ForeignKey("models.id"))
    error: Mapped[str | None] = mapped_column(sa.Text)
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ApiKey(Base):
    """An API key: only a keyed hash is stored; `prefix` identifies it in lists and logs."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(200))
    prefix: Mapped[str] = mapped_column(sa.String(32), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who did what to which object, when (no patient data, no keys)."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index(None, "at"), sa.Index(None, "key_id"), sa.Index(None, "user_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    key_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)  # a staff account (app/accounts)
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str | None] = mapped_column(sa.String(256))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(Base):
    """A staff account (app/accounts): local (argon2 hash) or from the directory (LDAP, no
    hash kept). `role` maps to API scopes (app/accounts/roles.py)."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(sa.String(128), unique=True)  # lower-cased
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[str] = mapped_column(sa.String(16))
    source: Mapped[str] = mapped_column(sa.String(16), default="local")  # local | ldap
    password_hash: Mapped[str | None] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    password_changed_at: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]


class UiSessionRow(Base):
    """A signed-in browser (app/ui/sessions.py): only a hash of the cookie's random id is kept,
    so every server process sharing the database accepts it and a restart keeps it."""

    __tablename__ = "ui_sessions"
    __table_args__ = (
        sa.Index(None, "user_id"),
        sa.Index(None, "key_id"),
        sa.Index(None, "seen_at"),
    )

    id_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("api_keys.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    scopes: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    csrf: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginThrottle(Base):
    """Failed sign-ins per account or client address, shared by every server process:
    too many within `window` lock the key until `locked_until` (app/accounts/lockout.py).
    Keys are hashed: a password typed into the user field is never stored."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    window_start: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]


class Video(Base):
    """An uploaded (or DICOM) procedure video and the state of its analysis.

    `origin` holds DICOM UIDs only and no column ever holds the upload's file name (it may
    carry patient data). `file_key` is the kept original under settings.video_dir (None once
    deleted by the retention rule)."""

    __tablename__ = "videos"
    __table_args__ = (
        sa.UniqueConstraint("procedure_id", "sha256"),
        sa.Index(None, "procedure_id"),
        sa.Index(None, "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    procedure_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("procedures.id"))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    container: Mapped[str] = mapped_column(sa.String(32))
    codec: Mapped[str] = mapped_column(sa.String(32))
    width: Mapped[int]
    height: Mapped[int]
    fps: Mapped[float]
    duration_s: Mapped[float]
    rotation: Mapped[int] = mapped_column(default=0)
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    source: Mapped[str] = mapped_column(sa.String(16), default="upload")
    origin: Mapped[dict[str, Any]] = mapped_column(default=dict)
    file_key: Mapped[str | None] = mapped_column(sa.String(256))
    retain_until: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    job_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("jobs.id"))
    model_id: Mapped[str | None] = mapped_column(sa.ForeignKey("models.id"))
    analysis: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class VideoFrame(Base):
    """One analysed frame (at the analysis rate): quality verdict, top labels, and while the
    analysis runs its vector (for the segments; set to NULL at the end)."""

    __tablename__ = "video_frames"

    video_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    t_ms: Mapped[int]
    ok: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(sa.String(16))
    quality: Mapped[float]
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    labels: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)
    vector: Mapped[bytes | None] = mapped_column(sa.LargeBinary)


class VideoImage(Base):
    """A still picked from a video for a requirement: an image of the procedure that counts
    for the checklist only through its review (accepted)."""

    __tablename__ = "video_images"
    __table_args__ = (
        sa.UniqueConstraint("video_id", "requirement", "rank"),
        sa.Index(None, "image_id"),
        sa.Index(None, "video_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("images.id", ondelete="CASCADE")
    )
    video_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("videos.id", ondelete="CASCADE"))
    requirement: Mapped[str] = mapped_column(sa.String(128))
    label: Mapped[str] = mapped_column(sa.String(128))
    t_ms: Mapped[int]
    score: Mapped[float]
    quality: Mapped[float]
    rank: Mapped[int]
    review: Mapped[str] = mapped_column(sa.String(16), default="needs_review")
    reviewed_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    reviewed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VideoSegment(Base):
    """A window of a video as one vector (mean of its kept frames); `id` is its vector id in
    the segment index of `model_id` (derived, rebuilt from these rows)."""

    __tablename__ = "video_segments"
    __table_args__ = (
        sa.UniqueConstraint("video_id", "model_id", "start_ms"),
        sa.Index(None, "video_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    video_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("videos.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id"))
    start_ms: Mapped[int]
    end_ms: Mapped[int]
    vector: Mapped[bytes] = mapped_column(sa.LargeBinary)
