"""Typed errors raised by the loreg client (SDK and CLI).

Every error carries a one-line, human-readable message that says what to fix.
HTTP errors from the registry are mapped to these classes by ``code``/status.
"""

from __future__ import annotations

from typing import Any


class LoregError(Exception):
    """Base class of every loreg client error."""

    exit_code = 1

    #: Set (annotation only, no default) on errors built from an HTTP answer by
    #: ``loreg.http.error_from_response``: the body's ``details`` and ``Retry-After``.
    details: Any
    retry_after: float | None

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message


class ConfigError(LoregError, ValueError):
    """The server or worker configuration (``LOREG_*`` variables) is invalid or incomplete.

    Raised by ``registry.settings`` too (one class for the concept); the message names
    the variable to set or fix.
    """

    exit_code = 2


class InvalidRefError(LoregError, ValueError):
    """A reference string does not follow the ref grammar."""

    exit_code = 2


class InvalidNameError(InvalidRefError):
    """A namespace, adapter or alias name is not allowed."""


class RequestError(LoregError):
    """The registry refused a request (4xx) for a reason not covered below."""


class NotFoundError(RequestError):
    """The ref, adapter, namespace or version does not exist (or is not visible)."""

    exit_code = 3


class AuthenticationError(RequestError):
    """The token is missing, invalid or revoked (HTTP 401)."""

    exit_code = 4


class PermissionDeniedError(RequestError):
    """The token lacks the scope needed for this namespace (HTTP 403)."""

    exit_code = 4


class ValidationFailedError(RequestError):
    """The registry rejected the content (HTTP 400/413/422): bad file, config or shapes."""

    exit_code = 5


class ConflictError(RequestError):
    """The request conflicts with the current state (HTTP 409)."""

    exit_code = 6


class ServerError(LoregError):
    """The registry failed (HTTP 5xx) or could not be reached."""

    exit_code = 7


class IntegrityError(LoregError):
    """Downloaded bytes do not match the sha256 the registry announced."""

    exit_code = 8


class OfflineCacheMissError(LoregError):
    """Offline mode is on and the ref is not in the local cache."""

    exit_code = 3


class ServiceUnavailableError(ServerError):
    """The registry answered 503: a service it depends on is down (retried, then raised).

    ``retry_after`` is the registry's ``Retry-After`` in seconds (None if absent).
    """

    #: What is unavailable, as the message says it.
    dependency = "a service it depends on"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = 503,
        retry_after: float | None = None,
    ):
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class DatabaseUnavailableError(ServiceUnavailableError):
    """The registry's database is down (503 ``database_unavailable``)."""

    dependency = "database"


class StoreUnavailableError(ServiceUnavailableError):
    """The registry's object store is down (503 ``store_unavailable``)."""

    dependency = "object store"


class BrokerUnavailableError(ServiceUnavailableError):
    """The registry's job broker is down (503 ``broker_unavailable``)."""

    dependency = "job broker"


class FilesMissingError(LoregError):
    """Files of a version are listed by the registry but their bytes are gone from its store.

    Raised for a resolve answer 409 ``files_missing`` and for a download the
    store answers 403/404/410. ``missing`` holds the file paths.
    """

    exit_code = 9

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | None = None,
        code: str | None = "files_missing",
        status: int | None = None,
    ):
        super().__init__(message, code=code, status=status)
        self.missing = list(missing or [])


class DiskFullError(LoregError):
    """The disk holding the local cache is full; nothing partial was kept."""

    exit_code = 10

    def __init__(self, message: str, *, folder: str = "", needed: int | None = None):
        super().__init__(message, code="disk_full")
        self.folder = folder
        self.needed = needed
