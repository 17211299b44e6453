"""Every environment variable and default the loreg client reads, in one place.

Values are read when the getter is called (not at import time), so a process
can change its environment (or a test can monkeypatch it) before building a
:class:`loreg.Registry`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from loreg.errors import LoregError

#: Registry base URL.
ENV_URL = "LOREG_URL"
#: Bearer token sent to the registry.
ENV_TOKEN = "LOREG_TOKEN"
#: Root of the local cache (blobs, snapshots, refs, manifests).
ENV_CACHE_DIR = "LOREG_CACHE_DIR"
#: ``1``/``true``: resolve and pull from the local cache only, never touch the network.
ENV_OFFLINE = "LOREG_OFFLINE"
#: How many blobs / multipart parts are sent at the same time.
ENV_UPLOAD_CONCURRENCY = "LOREG_UPLOAD_CONCURRENCY"
#: How many files are downloaded at the same time.
ENV_DOWNLOAD_CONCURRENCY = "LOREG_DOWNLOAD_CONCURRENCY"
#: Any non-empty value other than ``0``/``false`` disables progress bars.
ENV_NO_PROGRESS = "LOREG_NO_PROGRESS"
#: Seconds to wait for an API answer (metadata requests).
ENV_TIMEOUT = "LOREG_TIMEOUT"
#: Seconds to wait for a TCP connection.
ENV_CONNECT_TIMEOUT = "LOREG_CONNECT_TIMEOUT"
#: Seconds to wait between two reads (or writes) of a blob transfer.
ENV_TRANSFER_TIMEOUT = "LOREG_TRANSFER_TIMEOUT"
#: Attempts per idempotent transfer (connection errors and 5xx are retried).
ENV_RETRIES = "LOREG_RETRIES"
#: Seconds a request keeps retrying while the registry answers 503 (a database, object
#: store or broker outage) or cannot be reached; ``0`` turns retries off.
ENV_RETRY_MAX_S = "LOREG_RETRY_MAX_S"
#: ``1``: the CLI prints tracebacks instead of one-line errors.
ENV_DEBUG = "LOREG_DEBUG"

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_UPLOAD_CONCURRENCY = 8
DEFAULT_DOWNLOAD_CONCURRENCY = 8
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_TRANSFER_TIMEOUT_S = 300.0
DEFAULT_RETRIES = 3
DEFAULT_RETRY_MAX_S = 30.0

#: Read size of blob downloads and uploads.
CHUNK_SIZE = 8 * 2**20
#: File suffixes that hold pickled Python objects (loading one can run code); the
#: registry refuses them, also under a compression suffix (``x.pkl.gz``). Same list
#: as ``registry.validation.paths``.
PICKLE_SUFFIXES = (
    ".bin",
    ".pt",
    ".pth",
    ".pkl",
    ".pickle",
    ".ckpt",
    ".joblib",
    ".dill",
    ".npy",
    ".npz",
)
#: safetensors metadata ``format`` of an int8 LoRA adapter (compress job output):
#: ``<module>.lora_X.qweight`` int8 values with float32 per-row ``.scales``.
INT8_FORMAT = "loreg-lora-int8-rowwise"
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")

#: The words a boolean setting accepts, any case, surrounding blanks ignored: the
#: client's ``LOREG_*`` flags and the server's (``registry.settings``) alike.
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def parse_flag(raw: str) -> bool:
    """A boolean setting's value: ``1/true/yes/on`` or ``0/false/no/off`` (or blank).

    Raises ValueError (``must be 1/true or 0/false, got '...'``) for any other word;
    callers put the variable's name in front.
    """
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError(f"must be 1/true or 0/false, got {raw!r}")


def env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (``1/true/yes/on`` or ``0/false/no/off``)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return parse_flag(raw)
    except ValueError as exc:
        raise LoregError(f"{name} {exc}") from None


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """Read an integer environment variable, at least ``minimum``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LoregError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise LoregError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, allow_zero: bool = False) -> float:
    """Read a finite float environment variable (seconds): positive, or ``>= 0``
    with ``allow_zero``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise LoregError(f"{name} must be a number of seconds, got {raw!r}") from None
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise LoregError(f"{name} must be a finite number of seconds {bound}, got {raw!r}")
    return value


def is_pickle_path(path: str) -> bool:
    """True when a file name's suffix marks a pickle (also under a compression suffix)."""
    name = path.rsplit("/", 1)[-1].lower()
    for compression in COMPRESSION_SUFFIXES:
        if name.endswith(compression):
            name = name[: -len(compression)]
            break
    return name.endswith(PICKLE_SUFFIXES)


def registry_url() -> str:
    """The registry URL: ``LOREG_URL`` or ``http://127.0.0.1:8080``."""
    return (os.environ.get(ENV_URL) or DEFAULT_URL).strip().rstrip("/")


def registry_token() -> str | None:
    """The bearer token from ``LOREG_TOKEN`` (None when unset or blank)."""
    token = (os.environ.get(ENV_TOKEN) or "").strip()
    return token or None


def default_cache_dir() -> Path:
    """The cache root: ``LOREG_CACHE_DIR``, else the platform's user cache folder + ``loreg``."""
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "loreg"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "loreg" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loreg"


def offline_mode() -> bool:
    """True when ``LOREG_OFFLINE`` is set to 1/true."""
    return env_flag(ENV_OFFLINE)


def progress_disabled() -> bool:
    """True when ``LOREG_NO_PROGRESS`` is set (to anything but 0/false)."""
    raw = os.environ.get(ENV_NO_PROGRESS)
    return raw is not None and raw.strip().lower() not in FALSE_WORDS


def upload_concurrency() -> int:
    """Parallel uploads (``LOREG_UPLOAD_CONCURRENCY``, default 8)."""
    return env_int(ENV_UPLOAD_CONCURRENCY, DEFAULT_UPLOAD_CONCURRENCY)


def download_concurrency() -> int:
    """Parallel downloads (``LOREG_DOWNLOAD_CONCURRENCY``, default 8)."""
    return env_int(ENV_DOWNLOAD_CONCURRENCY, DEFAULT_DOWNLOAD_CONCURRENCY)


def api_timeout() -> float:
    """Seconds to wait for an API answer (``LOREG_TIMEOUT``, default 60)."""
    return env_float(ENV_TIMEOUT, DEFAULT_TIMEOUT_S)


def connect_timeout() -> float:
    """Seconds to wait for a connection (``LOREG_CONNECT_TIMEOUT``, default 10)."""
    return env_float(ENV_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT_S)


def transfer_timeout() -> float:
    """Seconds between two reads/writes of a transfer (``LOREG_TRANSFER_TIMEOUT``, default 300)."""
    return env_float(ENV_TRANSFER_TIMEOUT, DEFAULT_TRANSFER_TIMEOUT_S)


def transfer_retries() -> int:
    """Attempts per idempotent transfer (``LOREG_RETRIES``, default 3)."""
    return env_int(ENV_RETRIES, DEFAULT_RETRIES)


def retry_max_s() -> float:
    """Seconds to keep retrying 503s and unreachable registries (``LOREG_RETRY_MAX_S``, 30)."""
    return env_float(ENV_RETRY_MAX_S, DEFAULT_RETRY_MAX_S, allow_zero=True)


def debug_mode() -> bool:
    """True when ``LOREG_DEBUG`` asks for tracebacks."""
    return env_flag(ENV_DEBUG)
