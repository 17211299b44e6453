"""Short-lived URLs: S3 presigned GETs, or HMAC-signed API URLs for the local store.

Signed API URLs authorize a request by themselves (no token): blob downloads, and
the Hub write side's LFS upload and completion URLs (:func:`signed_query`), which
the stock client calls without its ``Authorization`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from registry.errors import NotFound
from registry.services.context import Context
from registry.storage.base import blob_key


def _signature(secret: str, sha256: str, expires: int) -> str:
    message = f"{sha256}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def blob_download_url(ctx: Context, base_url: str, sha256: str, filename: str | None) -> str:
    """A URL from which anyone holding it may GET the blob until it expires."""
    expiry = ctx.settings.presign_expiry_s
    url = ctx.store.presign_get(blob_key(sha256), expires_in=expiry, filename=filename)
    if url:
        return url
    expires = int(time.time()) + expiry
    sig = _signature(ctx.settings.secret_key, sha256, expires)
    base = (ctx.settings.public_url or base_url).rstrip("/")
    return f"{base}/v1/blobs/{quote(sha256)}?expires={expires}&signature={sig}"


def check_blob_signature(ctx: Context, sha256: str, expires: int, signature: str) -> None:
    """Raise NotFound unless the signature is valid and not expired (no existence leak)."""
    if expires < int(time.time()):
        raise NotFound("download URL expired: resolve the ref again for a fresh URL")
    expected = _signature(ctx.settings.secret_key, sha256, expires)
    # compare bytes: compare_digest refuses str with non-ASCII characters (TypeError)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise NotFound("invalid download URL signature")


def _purpose_signature(secret: str, purpose: str, parts: tuple[str, ...], expires: int) -> str:
    message = ":".join((purpose, *parts, str(expires))).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_query(ctx: Context, purpose: str, *parts: str, expires_in: int) -> str:
    """``expires=...&signature=...`` authorizing ``purpose`` on ``parts`` for ``expires_in`` s.

    ``purpose`` keeps a signature for one kind of request from authorizing another.
    """
    expires = int(time.time()) + expires_in
    sig = _purpose_signature(ctx.settings.secret_key, purpose, parts, expires)
    return f"expires={expires}&signature={sig}"


def check_signed(ctx: Context, purpose: str, *parts: str, expires: int, signature: str) -> None:
    """Raise NotFound unless ``signature`` is :func:`signed_query`'s for these and not expired."""
    if expires < int(time.time()):
        raise NotFound("this upload URL expired: ask for a new one (the LFS batch call)")
    expected = _purpose_signature(ctx.settings.secret_key, purpose, parts, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise NotFound("invalid upload URL signature")
