"""One place for every knob of the service, read from ENDOSEEK_* variables and a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_bundle() -> str:
    """The shipped weight-free baseline bundle, or '' while the embedder is not importable."""
    try:
        from embedder.paths import default_bundle_path  # a leaf module: no torch
    except ImportError:  # pragma: no cover - embedder is a sibling package of the same repo
        return ""
    return str(default_bundle_path())


class Settings(BaseSettings):
    """Service configuration; every field maps to ENDOSEEK_<FIELD> (e.g. ENDOSEEK_PORT)."""

    model_config = SettingsConfigDict(env_prefix="ENDOSEEK_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./var/endoseek.db"
    storage_dir: Path = Path("./var/storage")
    index_dir: Path = Path("./var/index")
    bundle: str = Field(default_factory=_default_bundle)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=40_000_000, gt=0)
    max_files_per_request: int = Field(default=64, gt=0)
    max_request_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    # Slow and stuck clients (app/api/limits.py, app/api/http_protocol.py): a request line and
    # headers must arrive within header_timeout_s and fit max_header_bytes; a body may pause at
    # most body_idle_timeout_s and, after that long, must average body_min_rate_bps (0: off).
    header_timeout_s: float = Field(default=30.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, gt=0)
    body_idle_timeout_s: float = Field(default=30.0, gt=0)
    body_min_rate_bps: int = Field(default=1024, ge=0)
    keep_alive_timeout_s: int = Field(default=5, ge=1)  # idle keep-alive connections close
    limit_concurrency: int = Field(default=1000, ge=0)  # open connections; over it: 503; 0 = off
    backlog: int = Field(default=2048, gt=0)  # listen() queue of not yet accepted connections
    max_k: int = Field(default=100, gt=0)
    search_overfetch: int = Field(default=10, ge=1)
    # Uploads are refused (507) and /ready fails while the storage, index or SQLite volume has
    # less free space than this; 0 turns the guard off (a real ENOSPC still answers 507 and
    # /ready still fails on a volume with no free space at all).
    min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    db_retry_after_s: int = Field(default=5, ge=1)  # Retry-After of 503 database_unavailable
    db_connect_timeout_s: int = Field(default=5, ge=1)  # PostgreSQL: a dead server fails fast

    batch_max_size: int = Field(default=32, gt=0)
    batch_max_wait_ms: float = Field(default=0.0, ge=0)  # 0: batch what is queued, no timer
    decode_threads: int = Field(default=2, gt=0)

    flat_index_limit: int = Field(default=100_000, gt=0)
    index_device: Literal["auto", "cpu", "gpu"] = "auto"
    # OpenMP threads per search (0: FAISS's default, every core). Concurrent requests already
    # use the cores; one thread per query avoids oversubscription (indexer/faiss_index.py).
    index_search_threads: int = Field(default=1, ge=0)
    snapshot_interval_s: float = Field(default=300.0, gt=0)
    # Vector engine (indexer/backends.py, docs/deploy.md "Several workers"): "faiss" lives in
    # the serving process (one worker); "milvus" is shared by every worker: milvus_uri is a
    # local path (Milvus Lite, one process; default: <index_dir>/milvus.db) or a server URL
    # (http[s]://host:19530) with milvus_token ("user:password" or an API key) and milvus_tls.
    vector_backend: Literal["faiss", "milvus"] = "faiss"
    milvus_uri: str = ""
    milvus_token: SecretStr | None = None
    milvus_tls: bool = False  # TLS to the server (implied by an https:// URI)
    milvus_tls_ca: Path | None = None  # CA file of the server's certificate (default: system)
    milvus_prefix: str = Field(default="endoseek", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")
    milvus_index: Literal["FLAT", "HNSW"] = "FLAT"  # of a new collection; FLAT is exact
    # Consistency of searches (writes, counts and reconciliation stay Strong). Strong costs a
    # wait for the server's time tick on every search (~200 ms on Milvus 2.3 defaults,
    # docs/benchmarks.md); Bounded answers at once but may miss images written in the last
    # seconds by another worker.
    milvus_search_consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = "Strong"
    # A filtered search hands the index the allowed ids (from SQL: exact) when they are at
    # most this many; beyond it the search over-fetches and filters (app/services/search.py).
    search_filter_max_ids: int = Field(default=100_000, gt=0)
    workers: int = Field(default=1, ge=1, le=64)  # `serve` processes behind one port
    # Rate limits shared by every worker through Redis (redis://127.0.0.1:6379/0); empty: each
    # process counts on its own (fine with one worker).
    redis_url: SecretStr | None = None
    model_check_interval_s: float = Field(default=5.0, gt=0)  # notice re-index flips by others
    jobs_auto_resume: bool = False  # resume interrupted batch jobs when the server starts
    thumbnail_size: int = Field(default=256, gt=0)
    calibration_path: Path = Path("./var/calibration.json")  # `endoseek calibrate` writes it

    # Every stored photo and thumbnail is blacked out outside the endoscope's field of view,
    # where processors burn in patient text (embedder/fov.py); on for every ingest path.
    fov_mask: bool = True

    # DICOM node (app/dicom, docs/dicom.md). The receiver runs as `endoseek dicom-listen` or,
    # with dicom_listen, beside `serve`; it spools de-identified instances under dicom_spool_dir
    # and the serving process ingests them.
    dicom_listen: bool = False
    dicom_ae_title: str = Field(default="ENDOSEEK", min_length=1, max_length=16)
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(default=11112, ge=1, le=65535)
    dicom_require_called_aet: bool = True
    # allow-lists; empty = anyone (calling AE titles; IP addresses or CIDR networks)
    dicom_allowed_aets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dicom_allowed_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dicom_max_associations: int = Field(default=10, gt=0)
    dicom_acse_timeout_s: float = Field(default=30.0, gt=0)
    dicom_dimse_timeout_s: float = Field(default=30.0, gt=0)
    dicom_network_timeout_s: float = Field(default=60.0, gt=0)
    dicom_max_pdu: int = Field(default=65536, ge=0)  # receive PDU size we announce (0: none)
    dicom_tls_cert: Path | None = None  # both set: the receiver speaks TLS only
    dicom_tls_key: Path | None = None
    dicom_tls_ca: Path | None = None  # set: callers must present a certificate it signed
    # default: beside storage_dir (so a test's or a site's storage carries its own spool)
    dicom_spool_dir: Path = Field(default=None, validate_default=False)  # type: ignore[assignment]
    dicom_spool_poll_s: float = Field(default=1.0, gt=0)  # a separate receiver's new files
    # procedure source: this site name, else the calling AE title (C-STORE) or "dicomweb"
    dicom_source: str = ""
    # "regex=kind" rules, first match over study/requested procedure description, procedure
    # code meaning and body part examined (case-insensitive); no match: "other"
    dicom_kind_rules: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            r"colon|ileo|sigmoid|rect|lower\s*gi=colonoscopy",
            r"gastro|egd|ogd|esophag|oesophag|duoden|upper\s*gi|stomach=upper_gi",
        ]
    )
    dicom_max_frames: int = Field(default=16, gt=0)  # multi-frame stills: frames kept (evenly)
    dicom_keep_originals: bool = False  # keep a de-identified copy of each instance
    # procedure room code from Station Name (0008,1010), the calling AE title (C-STORE) or not
    # at all; a value that is no valid code after sanitising is dropped
    dicom_room_from: Literal["station_name", "calling_aet", "none"] = "station_name"
    # secret for keyed pseudonyms: set, a DICOM operator name becomes "op-" + 10 hex of
    # HMAC-SHA256(key, name); unset, no operator code is taken from DICOM (names never are)
    pseudonym_key: SecretStr | None = None
    stow_max_part_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    stow_max_request_bytes: int = Field(default=512 * 1024 * 1024, gt=0)

    # Procedure video (app/video): uploads, the analysis job and what is kept of a video.
    video_dir: Path = Field(default=None, validate_default=False)  # type: ignore[assignment]
    video_max_bytes: int = Field(default=4 * 1024**3, gt=0)  # 413 above
    video_max_duration_s: float = Field(default=2 * 3600.0, gt=0)  # 413 above (probed)
    video_max_pixels: int = Field(default=4096 * 2160, gt=0)  # per frame; 413 above
    video_analysis_fps: float = Field(default=2.0, gt=0, le=30)  # frames analysed per second
    video_analysis_side: int = Field(default=448, ge=64)  # longest side of an analysed frame
    video_chunk_s: float = Field(default=30.0, gt=0)  # video seconds per committed chunk
    video_smooth_s: float = Field(default=2.0, ge=1.0)  # temporal smoothing window
    video_picks_per_label: int = Field(default=3, ge=1, le=20)  # stills per requirement
    video_pick_gap_s: float = Field(default=2.0, ge=0)  # least time between two stills
    video_min_pick_score: float = Field(default=0.5, ge=0, le=1)  # smoothed vote share
    video_segment_s: float = Field(default=4.0, gt=0)  # similar-moment window
    video_segment_hop_s: float = Field(default=2.0, gt=0)
    video_keep_original: bool = True  # keep the uploaded file (playback from a timestamp)
    video_retention_days: float = Field(default=30.0, ge=0)  # then deleted; 0: until analysed

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_per_minute: int = Field(default=0, ge=0)  # per API key; 0 = unlimited
    log_level: str = "INFO"

    # Staff accounts and UI sessions (app/accounts, app/ui/sessions.py, docs/accounts.md).
    ui_idle_timeout_s: float = Field(default=30 * 60.0, gt=0)  # signed out after this idle
    ui_absolute_timeout_s: float = Field(default=10 * 3600.0, gt=0)  # and after this at most
    login_max_failures: int = Field(default=5, ge=1)  # per account within the window: locked
    login_lockout_s: float = Field(default=15 * 60.0, gt=0)  # window and lock length
    login_ip_failures_per_minute: int = Field(default=20, ge=1)  # per client address
    password_min_length: int = Field(default=12, ge=8)
    # LDAP / Active Directory sign-in (app/accounts/ldap.py); empty ldap_url: local accounts
    # only. ldap://host:389 (+ ldap_start_tls) or ldaps://host:636; certificates are checked
    # against ldap_ca_file (else the system store).
    ldap_url: str = ""
    ldap_start_tls: bool = False
    ldap_ca_file: Path | None = None
    ldap_bind_dn: str = ""  # service account that finds users (empty: anonymous search)
    ldap_bind_password: SecretStr | None = None
    ldap_user_base: str = ""
    ldap_user_filter: str = "(uid={username})"  # AD: (sAMAccountName={username})
    ldap_group_base: str = ""  # empty: only the user's memberOf attribute
    ldap_group_filter: str = "(|(member={dn})(uniqueMember={dn})(memberUid={username}))"
    # group DN or cn -> viewer | reviewer | admin (JSON); the highest mapped role wins, a user
    # in no mapped group cannot sign in
    ldap_group_roles: dict[str, str] = Field(default_factory=dict)
    ldap_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator(
        "cors_origins",
        "dicom_allowed_aets",
        "dicom_allowed_ips",
        "dicom_kind_rules",
        mode="before",
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept a comma-separated string as well as a JSON list."""
        if isinstance(value, str) and not value.strip().startswith("["):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _spool_beside_storage(self) -> Settings:
        if self.dicom_spool_dir is None:
            self.dicom_spool_dir = self.storage_dir.parent / "dicom-spool"
        if self.video_dir is None:
            self.video_dir = self.storage_dir.parent / "videos"
        return self

    def ensure_dirs(self) -> None:
        """Create the local directories (and the SQLite parent) the service writes into."""
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.dicom_spool_dir.mkdir(parents=True, exist_ok=True)
        self.video_dir.mkdir(parents=True, exist_ok=True)
        if self.database_url.startswith("sqlite:///"):
            path = self.database_url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own Settings instead)."""
    return Settings()
