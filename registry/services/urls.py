"""Short-lived download URLs: S3 presigned GETs, or HMAC-signed API URLs for the local store."""

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
