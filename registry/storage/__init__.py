"""Object storage for blobs: the :class:`ObjectStore` interface and its backends.

``S3Store`` is imported lazily (it pulls in boto3), so embedded mode never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry.storage.base import (
    InvalidKey,
    InvalidMultipart,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PresignedPart,
    PresignedPut,
    StorageError,
    blob_key,
    staging_key,
    validate_key,
)
from registry.storage.local import LocalStore

if TYPE_CHECKING:
    from registry.storage.s3 import S3Store

__all__ = [
    "InvalidKey",
    "InvalidMultipart",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PresignedPart",
    "PresignedPut",
    "S3Store",
    "StorageError",
    "blob_key",
    "staging_key",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    if name == "S3Store":
        from registry.storage.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
