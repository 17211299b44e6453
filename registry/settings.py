"""Server configuration: every LOREG_* environment variable the API reads.

Two run modes, one code path:

* embedded (default): SQLite + a local blob folder under ``data_dir``;
* production: ``LOREG_DATABASE_URL`` (Postgres) and ``LOREG_S3_BUCKET``
  (+ ``LOREG_S3_ENDPOINT_URL`` and the usual AWS credential variables).

``LOREG_S3_PUBLIC_ENDPOINT_URL`` is the S3 endpoint as clients reach it, when that
differs from ``LOREG_S3_ENDPOINT_URL`` (the API's own route, e.g. ``http://minio:9000``
inside a Compose network): presigned download and upload URLs are signed for it.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loreg.errors import ConfigError

MiB = 2**20

# The S3 settings that mean nothing without LOREG_S3_BUCKET.
S3_OPTION_VARS = (
    "LOREG_S3_ENDPOINT_URL",
    "LOREG_S3_PUBLIC_ENDPOINT_URL",
    "LOREG_S3_REGION",
    "LOREG_S3_PREFIX",
    "LOREG_S3_CREATE_BUCKET",
    "LOREG_S3_TRUST_CHECKSUMS",
)


def _env_number(name: str, default: Any, kind: type, what: str) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def _env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _check_s3_env() -> None:
    """Refuse S3 options without a bucket (they would silently mean the local store)."""
    if os.environ.get("LOREG_S3_BUCKET"):
        return
    given = [name for name in S3_OPTION_VARS if os.environ.get(name)]
    if given:
        raise ConfigError(
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set but LOREG_S3_BUCKET "
            "is not: set LOREG_S3_BUCKET to store blobs in S3, or unset "
            f"{'it' if len(given) == 1 else 'them'} to use the local store"
        )


def normalize_database_url(url: str) -> str:
    """The SQLAlchemy URL for a database URL as hosting platforms write it.

    ``postgres://`` and ``postgresql://`` (which SQLAlchemy 2.1 would hand to psycopg 3)
    use the installed psycopg2 driver; ``postgresql+psycopg://`` is accepted when
    psycopg 3 is installed. Anything else is returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2://{rest}"
    if scheme == "postgresql+psycopg" and importlib.util.find_spec("psycopg") is None:
        raise ConfigError(
            "LOREG_DATABASE_URL asks for the psycopg 3 driver (postgresql+psycopg://), which "
            "is not installed: write postgresql://... to use psycopg2, or pip install psycopg"
        )
    return url


def default_data_dir() -> Path:
    """Where the embedded registry keeps its SQLite file and blobs by default."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "loreg"


@dataclass(frozen=True)
class Settings:
    """Resolved server settings; build with :meth:`from_env`."""

    data_dir: Path
    database_url: str
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_create_bucket: bool = True
    s3_trust_checksums: bool = True
    public_url: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    presign_expiry_s: int = 900
    upload_expiry_s: int = 24 * 3600
    gc_grace_s: int = 24 * 3600
    max_json_body_bytes: int = 4 * MiB
    max_file_bytes: int = 64 * 1024 * MiB
    max_files_per_version: int = 1000
    max_safetensors_header_bytes: int = 16 * MiB
    max_config_bytes: int = 1 * MiB
    multipart_threshold_bytes: int = 64 * MiB
    multipart_part_size_bytes: int = 16 * MiB
    redis_url: str | None = None
    job_heartbeat_s: float = 5.0
    job_stale_after_s: float = 60.0
    job_requeue_after_s: float = 60.0
    job_max_attempts: int = 5
    visibility_timeout_s: int = 6 * 3600
    fsck_interval_s: float = 0.0
    db_connect_timeout_s: float = 5.0
    db_statement_timeout_s: float = 30.0
    retry_after_s: int = 5
    header_timeout_s: float = 10.0
    keepalive_timeout_s: int = 5
    limit_concurrency: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "database_url", normalize_database_url(self.database_url))
        for name in ("db_connect_timeout_s", "db_statement_timeout_s", "header_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds")
        if self.limit_concurrency < 2:
            raise ConfigError("limit_concurrency (LOREG_LIMIT_CONCURRENCY) must be at least 2")
        if not self.s3_bucket:
            for name in ("s3_endpoint_url", "s3_public_endpoint_url"):
                if getattr(self, name):
                    raise ConfigError(
                        f"{name} is set but s3_bucket is not (LOREG_S3_BUCKET): "
                        "an S3 endpoint needs a bucket"
                    )

    @property
    def storage_kind(self) -> str:
        """``"s3"`` when a bucket is configured, else ``"local"``."""
        return "s3" if self.s3_bucket else "local"

    @property
    def database_kind(self) -> str:
        """The SQLAlchemy dialect name of the database URL."""
        return self.database_url.split(":", 1)[0].split("+", 1)[0]

    @property
    def blob_dir(self) -> Path:
        """Root of the local object store (embedded mode)."""
        return self.data_dir / "objects"

    def with_overrides(self, **changes) -> Settings:
        """A copy with some fields replaced (tests, ``loreg serve`` flags)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None) -> Settings:
        """Read the LOREG_* environment; ``data_dir`` overrides LOREG_DATA_DIR.

        Raises :class:`ConfigError` naming the variable when the environment is
        invalid, e.g. ``LOREG_S3_ENDPOINT_URL`` set without ``LOREG_S3_BUCKET``.
        """
        _check_s3_env()
        root = Path(data_dir or os.environ.get("LOREG_DATA_DIR") or default_data_dir())
        root = root.expanduser().resolve()
        database_url = os.environ.get("LOREG_DATABASE_URL") or f"sqlite:///{root / 'loreg.db'}"
        secret = os.environ.get("LOREG_SECRET_KEY") or _stored_secret(root)
        return cls(
            data_dir=root,
            database_url=database_url,
            s3_bucket=os.environ.get("LOREG_S3_BUCKET") or None,
            s3_endpoint_url=os.environ.get("LOREG_S3_ENDPOINT_URL") or None,
            s3_public_endpoint_url=os.environ.get("LOREG_S3_PUBLIC_ENDPOINT_URL") or None,
            s3_region=os.environ.get("LOREG_S3_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            s3_prefix=os.environ.get("LOREG_S3_PREFIX", ""),
            s3_create_bucket=os.environ.get("LOREG_S3_CREATE_BUCKET", "1") not in ("0", "false"),
            s3_trust_checksums=os.environ.get("LOREG_S3_TRUST_CHECKSUMS", "1")
            not in ("0", "false"),
            public_url=os.environ.get("LOREG_PUBLIC_URL") or None,
            secret_key=secret,
            presign_expiry_s=_env_int("LOREG_PRESIGN_EXPIRY", 900),
            upload_expiry_s=_env_int("LOREG_UPLOAD_EXPIRY", 24 * 3600),
            gc_grace_s=_env_int("LOREG_GC_GRACE", 24 * 3600),
            max_json_body_bytes=_env_int("LOREG_MAX_JSON_BODY", 4 * MiB),
            max_file_bytes=_env_int("LOREG_MAX_FILE_SIZE", 64 * 1024 * MiB),
            max_safetensors_header_bytes=_env_int("LOREG_MAX_HEADER_SIZE", 16 * MiB),
            multipart_threshold_bytes=_env_int("LOREG_MULTIPART_THRESHOLD", 64 * MiB),
            multipart_part_size_bytes=_env_int("LOREG_MULTIPART_PART_SIZE", 16 * MiB),
            redis_url=os.environ.get("LOREG_REDIS_URL") or None,
            job_heartbeat_s=_env_float("LOREG_JOB_HEARTBEAT", 5.0),
            job_stale_after_s=_env_float("LOREG_JOB_STALE_AFTER", 60.0),
            job_requeue_after_s=_env_float("LOREG_JOB_REQUEUE_AFTER", 60.0),
            job_max_attempts=_env_int("LOREG_JOB_MAX_ATTEMPTS", 5),
            visibility_timeout_s=_env_int("LOREG_VISIBILITY_TIMEOUT", 6 * 3600),
            fsck_interval_s=_env_float("LOREG_FSCK_INTERVAL", 0.0),
            db_connect_timeout_s=_env_float("LOREG_DB_CONNECT_TIMEOUT", 5.0),
            db_statement_timeout_s=_env_float("LOREG_DB_STATEMENT_TIMEOUT", 30.0),
            retry_after_s=_env_int("LOREG_RETRY_AFTER", 5),
            header_timeout_s=_env_float("LOREG_HEADER_TIMEOUT", 10.0),
            keepalive_timeout_s=_env_int("LOREG_KEEPALIVE_TIMEOUT", 5),
            limit_concurrency=_env_int("LOREG_LIMIT_CONCURRENCY", 1000),
        )


def _stored_secret(root: Path) -> str:
    """The signing key for local download URLs, created once in the data dir."""
    path = root / "secret_key"
    if path.exists():
        return path.read_text().strip()
    root.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path.read_text().strip()
