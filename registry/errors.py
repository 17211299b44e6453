"""Typed API errors.

Each class is one way the registry can refuse a request. Every error has a
stable ``code`` (part of the HTTP contract) and an HTTP ``status``; handlers in
``registry.app`` render them as ``{"error": {"code": ..., "message": ...}}``.
Validation modules raise these directly so that a refusal always names the
problem and never turns into a 500.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base class: an error with a stable code, an HTTP status and a message."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class InvalidName(RegistryError):
    """A namespace, adapter, alias or base-model name breaks the name grammar."""

    status = 422
    code = "invalid_name"


class InvalidRef(RegistryError):
    """A ref string breaks the ref grammar."""

    status = 422
    code = "invalid_ref"


class InvalidPath(RegistryError):
    """A file path is absolute, contains '..', control characters or is too long."""

    status = 422
    code = "invalid_path"


class PickleRefused(RegistryError):
    """A pickle file (.bin, .pt, .pkl, ...) was offered; only safetensors are accepted."""

    status = 422
    code = "pickle_refused"


class InvalidSafetensors(RegistryError):
    """A safetensors file is malformed, truncated or lies about dtype/shape/offsets."""

    status = 422
    code = "invalid_safetensors"


class InvalidConfig(RegistryError):
    """The adapter config is not valid JSON, not a LoRA config, or contradicts the tensors."""

    status = 422
    code = "invalid_config"


class InvalidDataset(RegistryError):
    """A dataset file is not chat JSONL (one JSON object per line, docs/design.md §7)."""

    status = 422
    code = "invalid_dataset"


class ShapeMismatch(RegistryError):
    """The adapter's module shapes do not fit the registered base model."""

    status = 422
    code = "shape_mismatch"


class InvalidManifest(RegistryError):
    """The file list of an upload is unusable (duplicates, missing required files, sizes)."""

    status = 422
    code = "invalid_manifest"


class MissingBlob(RegistryError):
    """A blob named by the manifest was never uploaded."""

    status = 409
    code = "missing_blob"


class FilesMissing(RegistryError):
    """A version's files are listed but their bytes are gone from the store (found by fsck).

    ``details`` is ``{"missing": [paths]}``; a push of the same files restores them.
    """

    status = 409
    code = "files_missing"


class BlobMismatch(RegistryError):
    """Uploaded bytes do not match the declared size or sha256."""

    status = 422
    code = "blob_mismatch"


class NotFound(RegistryError):
    """The object does not exist or is not visible to the caller."""

    status = 404
    code = "not_found"


class Unauthorized(RegistryError):
    """The bearer token is missing, malformed, unknown or revoked."""

    status = 401
    code = "unauthorized"


class Forbidden(RegistryError):
    """The token can see the namespace but lacks the required scope."""

    status = 403
    code = "forbidden"


class Conflict(RegistryError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class UploadExpired(RegistryError):
    """The upload session expired or was already committed."""

    status = 410
    code = "upload_expired"


class PayloadTooLarge(RegistryError):
    """A request body, header or file exceeds a configured limit."""

    status = 413
    code = "payload_too_large"


class InvalidJob(RegistryError):
    """A job submission names missing inputs, mixed base models or out-of-range params."""

    status = 422
    code = "invalid_job"


class InvalidPreset(RegistryError):
    """A preset's params break the rules a train job's params follow."""

    status = 422
    code = "invalid_preset"


class InvalidRequest(RegistryError):
    """The request body does not match the schema."""

    status = 422
    code = "invalid_request"


class InvalidCursor(RegistryError):
    """A list's ``cursor`` was altered, truncated, or made for another query."""

    status = 400
    code = "invalid_cursor"


class ServiceUnavailable(RegistryError):
    """A dependency of the registry (database, object store, broker) cannot be reached.

    The request may succeed later: the response carries ``Retry-After`` (seconds).
    """

    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, details: Any = None, retry_after: int = 5):
        super().__init__(message, details=details)
        self.retry_after = retry_after


class DatabaseUnavailable(ServiceUnavailable):
    """The database is down, unreachable or did not answer in time."""

    code = "database_unavailable"


class StoreUnavailable(ServiceUnavailable):
    """The object store (S3 endpoint or local blob folder) is down or unreachable."""

    code = "store_unavailable"


class BrokerUnavailable(ServiceUnavailable):
    """The job broker (Redis) is down or unreachable."""

    code = "broker_unavailable"


class UnsupportedFile(RegistryError):
    """A file of a kind the registry does not store (only an allow-list of kinds is accepted)."""

    status = 422
    code = "unsupported_file"


class InvalidFileContent(RegistryError):
    """A file's bytes are not what its name says (JSON that does not parse, binary text, ...)."""

    status = 422
    code = "invalid_file_content"
