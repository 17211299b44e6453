"""Typed errors raised by the loreg client (SDK and CLI).

Every error carries a one-line, human-readable message that says what to fix.
HTTP errors from the registry are mapped to these classes by ``code``/status.
"""

from __future__ import annotations


class LoregError(Exception):
    """Base class of every loreg client error."""

    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return self.message


class ConfigurationError(LoregError):
    """The server or worker configuration (``LOREG_*`` variables) is invalid or incomplete."""

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
