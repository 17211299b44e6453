"""Server configuration: every LOREG_* environment variable the API reads.

Two run modes, one code path:

* embedded (default): SQLite + a local blob folder under ``data_dir``;
* production: ``LOREG_DATABASE_URL`` (Postgres) and ``LOREG_S3_BUCKET``
  (+ ``LOREG_S3_ENDPOINT_URL`` and the usual AWS credential variables).

Each field of :class:`Settings` is read from ``LOREG_<FIELD>`` (any case), e.g.
``presign_expiry_s`` from ``LOREG_PRESIGN_EXPIRY_S``; the older, shorter names
(``LOREG_PRESIGN_EXPIRY``) still work. An empty variable counts as unset. Booleans
take the client's words (:func:`loreg.constants.parse_flag`): ``1/true/yes/on`` or
``0/false/no/off``, anything else is refused.

``LOREG_S3_PUBLIC_ENDPOINT_URL`` is the S3 endpoint as clients reach it, when that
differs from ``LOREG_S3_ENDPOINT_URL`` (the API's own route, e.g. ``http://minio:9000``
inside a Compose network): presigned download and upload URLs are signed for it.

``LOREG_HUB_URL`` (default ``https://huggingface.co``) and ``LOREG_HUB_TOKEN`` (a
secret, never shown in ``repr``) are the upstream Hub that ``mirror_import`` jobs
read through the stock ``huggingface_hub`` client.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from loreg.constants import parse_flag
from loreg.errors import ConfigError

MiB = 2**20
ENV_PREFIX = "LOREG_"

# The S3 settings that mean nothing without LOREG_S3_BUCKET.
S3_OPTION_VARS = (
    "LOREG_S3_ENDPOINT_URL",
    "LOREG_S3_PUBLIC_ENDPOINT_URL",
    "LOREG_S3_REGION",
    "LOREG_S3_PREFIX",
    "LOREG_S3_CREATE_BUCKET",
    "LOREG_S3_TRUST_CHECKSUMS",
)

__all__ = [
    "S3_OPTION_VARS",
    "ConfigError",
    "Settings",
    "default_data_dir",
    "env_names",
    "normalize_database_url",
]


def _flag(value: Any) -> Any:
    """Strings through the client's boolean rule; real booleans as they are."""
    return parse_flag(value) if isinstance(value, str) else value


#: A boolean setting (``1/true/yes/on``, ``0/false/no/off``).
Flag = Annotated[bool, BeforeValidator(_flag)]
#: A duration that must be finite and positive.
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: A duration where 0 means "off".
SecondsOrOff = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A size limit in bytes.
Bytes = Annotated[int, Field(ge=1)]


class Settings(BaseSettings):
    """Resolved server settings; build with :meth:`from_env`.

    ``Settings(...)`` in code takes its arguments alone (it never reads the
    environment) and raises :class:`ConfigError` for a value out of range.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
    )

    data_dir: Path
    database_url: str
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str | None = Field(
        None, validation_alias=AliasChoices("LOREG_S3_REGION", "AWS_DEFAULT_REGION")
    )
    s3_prefix: str = ""
    s3_create_bucket: Flag = True
    s3_trust_checksums: Flag = True
    public_url: str | None = None
    secret_key: str = Field(default_factory=lambda: secrets.token_hex(32), repr=False)
    # S3 signs URLs for at most 7 days.
    presign_expiry_s: int = Field(
        900,
        ge=1,
        le=7 * 24 * 3600,
        validation_alias=AliasChoices("LOREG_PRESIGN_EXPIRY_S", "LOREG_PRESIGN_EXPIRY"),
    )
    upload_expiry_s: int = Field(
        24 * 3600,
        ge=1,
        validation_alias=AliasChoices("LOREG_UPLOAD_EXPIRY_S", "LOREG_UPLOAD_EXPIRY"),
    )
    gc_grace_s: int = Field(
        24 * 3600, ge=0, validation_alias=AliasChoices("LOREG_GC_GRACE_S", "LOREG_GC_GRACE")
    )
    #: Seconds between scheduled gc passes (0: only on request): Celery beat with a
    #: broker, a thread of ``loreg serve``'s leader in embedded mode.
    gc_interval_s: SecondsOrOff = Field(
        3600.0, validation_alias=AliasChoices("LOREG_GC_INTERVAL_S", "LOREG_GC_INTERVAL")
    )
    max_json_body_bytes: Bytes = Field(
        4 * MiB,
        validation_alias=AliasChoices("LOREG_MAX_JSON_BODY_BYTES", "LOREG_MAX_JSON_BODY"),
    )
    max_file_bytes: Bytes = Field(
        64 * 1024 * MiB,
        validation_alias=AliasChoices("LOREG_MAX_FILE_BYTES", "LOREG_MAX_FILE_SIZE"),
    )
    max_files_per_version: int = Field(1000, ge=1)
    max_safetensors_header_bytes: Bytes = Field(
        16 * MiB,
        validation_alias=AliasChoices(
            "LOREG_MAX_SAFETENSORS_HEADER_BYTES", "LOREG_MAX_HEADER_SIZE"
        ),
    )
    max_config_bytes: Bytes = 1 * MiB
    multipart_threshold_bytes: Bytes = Field(
        64 * MiB,
        validation_alias=AliasChoices(
            "LOREG_MULTIPART_THRESHOLD_BYTES", "LOREG_MULTIPART_THRESHOLD"
        ),
    )
    # S3 takes parts of 5 MiB to 5 GiB (all but the last).
    multipart_part_size_bytes: int = Field(
        16 * MiB,
        ge=5 * MiB,
        le=5 * 1024 * MiB,
        validation_alias=AliasChoices(
            "LOREG_MULTIPART_PART_SIZE_BYTES", "LOREG_MULTIPART_PART_SIZE"
        ),
    )
    redis_url: str | None = None
    job_heartbeat_s: Seconds = Field(
        5.0, validation_alias=AliasChoices("LOREG_JOB_HEARTBEAT_S", "LOREG_JOB_HEARTBEAT")
    )
    job_stale_after_s: Seconds = Field(
        60.0,
        validation_alias=AliasChoices("LOREG_JOB_STALE_AFTER_S", "LOREG_JOB_STALE_AFTER"),
    )
    job_requeue_after_s: Seconds = Field(
        60.0,
        validation_alias=AliasChoices("LOREG_JOB_REQUEUE_AFTER_S", "LOREG_JOB_REQUEUE_AFTER"),
    )
    job_max_attempts: int = Field(5, ge=1)
    visibility_timeout_s: int = Field(
        6 * 3600,
        ge=1,
        validation_alias=AliasChoices("LOREG_VISIBILITY_TIMEOUT_S", "LOREG_VISIBILITY_TIMEOUT"),
    )
    fsck_interval_s: SecondsOrOff = Field(
        0.0, validation_alias=AliasChoices("LOREG_FSCK_INTERVAL_S", "LOREG_FSCK_INTERVAL")
    )
    db_connect_timeout_s: Seconds = Field(
        5.0,
        validation_alias=AliasChoices("LOREG_DB_CONNECT_TIMEOUT_S", "LOREG_DB_CONNECT_TIMEOUT"),
    )
    db_statement_timeout_s: Seconds = Field(
        30.0,
        validation_alias=AliasChoices("LOREG_DB_STATEMENT_TIMEOUT_S", "LOREG_DB_STATEMENT_TIMEOUT"),
    )
    retry_after_s: int = Field(
        5, ge=0, validation_alias=AliasChoices("LOREG_RETRY_AFTER_S", "LOREG_RETRY_AFTER")
    )
    #: Postgres connections per server process for the resolve lookup on the event loop
    #: (registry.services.async_lookup); more lookups wait their turn, and identical
    #: ones waiting share one statement. A lookup takes well under a millisecond on the
    #: same host, so a few keep a process busy; more only made the database's backends
    #: compete for the same cores (p99 at 16 connections on 2 cores: ~100 ms with 10,
    #: 10-25 ms with 4), and with 2, more of the queued lookups share a statement (the
    #: highest throughput at 16 connections; docs/benchmarks.md). Raise it for a
    #: database far away (a long round trip per statement).
    resolve_connections: int = Field(2, ge=1, le=64)
    #: How long a worker process trusts a token it checked (0: check every request). A
    #: token revoked elsewhere is refused by every process within this many seconds.
    token_cache_s: float = Field(
        10.0,
        ge=0,
        le=300,
        allow_inf_nan=False,
        validation_alias=AliasChoices("LOREG_TOKEN_CACHE_S", "LOREG_TOKEN_CACHE"),
    )
    header_timeout_s: Seconds = Field(
        10.0, validation_alias=AliasChoices("LOREG_HEADER_TIMEOUT_S", "LOREG_HEADER_TIMEOUT")
    )
    keepalive_timeout_s: int = Field(
        5,
        ge=1,
        validation_alias=AliasChoices("LOREG_KEEPALIVE_TIMEOUT_S", "LOREG_KEEPALIVE_TIMEOUT"),
    )
    limit_concurrency: int = Field(1000, ge=2)
    #: ``loreg serve`` processes sharing the listening socket (None: one per CPU core in
    #: production mode, a broker configured; 1 in embedded mode, which refuses more).
    workers: int | None = Field(None, ge=1)
    #: The upstream Hugging Face Hub of mirror jobs (another loreg's ``/hf`` works too).
    hub_url: str = Field("https://huggingface.co", min_length=1, max_length=512)
    #: Token sent to ``hub_url`` by mirror jobs (none when unset: public repos only).
    hub_token: str | None = Field(None, repr=False)
    #: Seconds between passes of the mirror scheduler (0: mirrors sync only when asked).
    mirror_poll_s: SecondsOrOff = 60.0

    def __init__(self, _given_as: Mapping[str, str] | None = None, **values: Any) -> None:
        """Validate ``values``; ``_given_as`` maps fields read from the environment to
        the variable that held them (named in errors instead of the field)."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, _given_as or {})) from None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        """Only the constructor's arguments: :meth:`from_env` reads the environment."""
        return (init_settings,)

    @field_validator("database_url")
    @classmethod
    def _driver(cls, url: str) -> str:
        return normalize_database_url(url)

    @field_validator("hub_url")
    @classmethod
    def _hub_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"hub_url (LOREG_HUB_URL) must be an http(s) URL, got {url!r}")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.s3_bucket:
            for name in ("s3_endpoint_url", "s3_public_endpoint_url"):
                if getattr(self, name):
                    raise ConfigError(
                        f"{name} is set but s3_bucket is not (LOREG_S3_BUCKET): "
                        "an S3 endpoint needs a bucket"
                    )
        return self

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

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests, ``loreg serve`` flags), checked again."""
        return type(self)(**{**dict(self), **changes})

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None) -> Settings:
        """Read the LOREG_* environment; ``data_dir`` overrides LOREG_DATA_DIR.

        Raises :class:`ConfigError` naming the variable when the environment is
        invalid, e.g. ``LOREG_S3_ENDPOINT_URL`` set without ``LOREG_S3_BUCKET``.
        """
        _check_s3_env()
        values = _read_env(cls)
        given_as = {name: _set_name(name) for name in values}
        from_env = values.pop("data_dir", None)
        root = Path(data_dir or from_env or default_data_dir())
        root = root.expanduser().resolve()
        values.setdefault("database_url", f"sqlite:///{root / 'loreg.db'}")
        if "secret_key" not in values:
            values["secret_key"] = _stored_secret(root)
        return cls(_given_as=given_as, data_dir=root, **values)


def env_names(field: str) -> tuple[str, ...]:
    """The environment variables a field is read from, the canonical one first."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (ENV_PREFIX + field.upper(),)


def _set_name(field: str) -> str:
    """The variable a field's value came from: the first of its names that is set."""
    names = env_names(field)
    return next((name for name in names if os.environ.get(name)), names[0])


def _read_env(cls: type[Settings]) -> dict[str, Any]:
    """The fields set in the environment, as raw strings keyed by field name."""
    found = EnvSettingsSource(cls)()
    by_key = {env_names(field)[0].lower(): field for field in cls.model_fields}
    return {by_key.get(key.lower(), key): value for key, value in found.items()}


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


_KINDS = {
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "int_type": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_parsing": "1/true or 0/false",
    "bool_type": "1/true or 0/false",
    "string_type": "a string",
    "path_type": "a path",
}
_BOUNDS = {
    "greater_than": ("greater than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}


def _explain(exc: ValidationError, given_as: Mapping[str, str]) -> str:
    """One line per invalid value, naming the variable (or field) to fix."""
    return "; ".join(_explain_one(error, given_as) for error in exc.errors())


def _explain_one(error: Any, given_as: Mapping[str, str]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error" and isinstance(ctx.get("error"), ConfigError):
        return str(ctx["error"])  # already names what to fix
    field = str(error["loc"][0]) if error["loc"] else ""
    if field in given_as:
        label = given_as[field]
    elif field in Settings.model_fields:
        label = f"{field} ({env_names(field)[0]})"
    else:
        label = field
    got = f", got {error['input']!r}"
    if kind == "value_error":
        return f"{label} {ctx.get('error', error['msg'])}"
    if kind in _KINDS:
        return f"{label} must be {_KINDS[kind]}{got}"
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        return f"{label} must be {words} {ctx[key]}{got}"
    if kind == "missing":
        return f"{label} is required"
    if kind == "extra_forbidden":
        return f"{label} is not a setting"
    return f"{label}: {error['msg']}{got}"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def normalize_database_url(url: str) -> str:
    """The SQLAlchemy URL for a database URL as hosting platforms write it.

    ``postgres://`` and ``postgresql://`` use psycopg 3 (``postgresql+psycopg://``), or
    psycopg2 where only that is installed; ``postgresql+psycopg://`` and
    ``postgresql+psycopg2://`` ask for one driver and are refused with a
    :class:`ConfigError` when it is missing. Anything else is returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme in ("postgres", "postgresql"):
        if _installed("psycopg"):
            return f"postgresql+psycopg://{rest}"
        if _installed("psycopg2"):
            return f"postgresql+psycopg2://{rest}"
        raise ConfigError(
            "LOREG_DATABASE_URL is a Postgres URL but no Postgres driver is installed: "
            "pip install psycopg[binary] (or loreg[server])"
        )
    if scheme == "postgresql+psycopg" and not _installed("psycopg"):
        raise ConfigError(
            "LOREG_DATABASE_URL asks for the psycopg 3 driver (postgresql+psycopg://), which "
            "is not installed: write postgresql://... to use the installed driver, or "
            "pip install psycopg[binary]"
        )
    if scheme == "postgresql+psycopg2" and not _installed("psycopg2"):
        raise ConfigError(
            "LOREG_DATABASE_URL asks for the psycopg2 driver (postgresql+psycopg2://), which "
            "is not installed: write postgresql://... to use psycopg 3, or "
            "pip install psycopg2-binary"
        )
    return url


def default_data_dir() -> Path:
    """Where the embedded registry keeps its SQLite file and blobs by default."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "loreg"


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
