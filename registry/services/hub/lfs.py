"""The Git LFS batch API of the Hub write side: where to send each blob.

``POST /{repo}.git/info/lfs/objects/batch`` answers, per object, either no actions
(the blob is stored and the caller may reuse it: a sha256 alone is not a read
permission, see :func:`registry.services.publish.held_by`) or how to upload it:

* S3: a presigned PUT into the upload's staging key, or for a blob of
  ``multipart_threshold_bytes`` and more a multipart upload (``header.chunk_size``,
  one presigned URL per part under its number, completed through a signed API URL);
* local store: a signed API URL taking the PUT (the client sends no token there).

Every upload action has a ``verify`` step (with the token) that checks size and
sha256 and promotes the blob into the store: only then can a commit name it. The
bytes go through a loose upload session (:func:`registry.services.publish.open_blob_upload`),
so staging, verification, promotion and garbage collection are the ``/v1`` publish's.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from registry.auth import Principal
from registry.errors import BlobMismatch, InvalidRequest, NotFound
from registry.models import UploadSession
from registry.services.context import Context
from registry.services.hub.access import writable_repo
from registry.services.hub.errors import HubBadRequest
from registry.services.publish.uploads import (
    complete_upload_blob,
    declared_size,
    find_open_upload,
    needs_bytes,
    open_blob_upload,
    open_upload,
    start_multipart,
)
from registry.services.urls import check_signed, signed_query
from registry.storage.base import staging_key

#: ``signed_query`` purposes: the local store's PUT and the multipart completion.
PUT_PURPOSE, COMPLETE_PURPOSE = "hub-lfs-put", "hub-lfs-complete"
MAX_OBJECTS = 1000
_OID = re.compile(r"[0-9a-f]{64}")


def lfs_base(base_url: str, namespace: str, name: str) -> str:
    """The URL prefix of a repo's LFS object routes."""
    return f"{base_url.rstrip('/')}/hf/{namespace}/{name}.git/info/lfs/objects"


def _objects(ctx: Context, body: dict[str, Any]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The valid objects (oid -> size) and the per-object errors of a batch body."""
    if body.get("operation") != "upload":
        raise HubBadRequest(
            "the LFS batch API here takes uploads only; files download from /resolve/"
        )
    objects = body.get("objects")
    if not isinstance(objects, list) or len(objects) > MAX_OBJECTS:
        raise HubBadRequest(f"'objects' must be a list of at most {MAX_OBJECTS} objects")
    if body.get("hash_algo", "sha256") != "sha256":
        raise HubBadRequest("only sha256 object ids are served (hash_algo 'sha256')")
    sizes: dict[str, int] = {}
    errors = []
    limit = ctx.settings.max_file_bytes
    for obj in objects:
        oid = obj.get("oid") if isinstance(obj, dict) else None
        size = obj.get("size") if isinstance(obj, dict) else None
        if not isinstance(oid, str) or not isinstance(size, int) or isinstance(size, bool):
            raise InvalidRequest("each LFS object needs 'oid' (a string) and 'size' (bytes)")
        problem = _problem(oid, size, limit, sizes)
        if problem is not None:
            code, message = problem
            errors.append({"oid": oid, "size": size, "error": {"code": code, "message": message}})
            continue
        sizes[oid] = size
    return sizes, errors


def _problem(oid: str, size: int, limit: int, sizes: dict[str, int]) -> tuple[int, str] | None:
    """Why one object cannot be uploaded (an HTTP code and a message), or None."""
    if not _OID.fullmatch(oid):
        return 422, "oid must be a sha256 as 64 lowercase hex digits"
    if not 0 <= size <= limit:
        return 413, f"object is {size} bytes; the limit is {limit}"
    if sizes.get(oid, size) != size:
        return 422, "the same oid is listed with two sizes"
    return None


def _upload_action(
    ctx: Context,
    upload: UploadSession,
    oid: str,
    size: int,
    lfs_url: str,
    multipart: dict[str, str],
) -> dict[str, Any]:
    """The ``upload`` action of one blob: where the client PUTs its bytes."""
    store, settings = ctx.store, ctx.settings
    expiry = settings.upload_expiry_s
    if not store.supports_presigned_urls:
        query = signed_query(ctx, PUT_PURPOSE, upload.id, oid, expires_in=expiry)
        return {"href": f"{lfs_url}/upload/{upload.id}/{oid}?{query}"}
    key = staging_key(upload.id, oid)
    if size < settings.multipart_threshold_bytes:
        put = store.presign_put(key, expires_in=expiry, size=size)
        assert put is not None, "a store that supports presigned URLs presigns a PUT"
        return {"href": put.url}
    part_size, urls = start_multipart(ctx, upload.id, oid, size, multipart)
    header = {"chunk_size": str(part_size)} | {str(n): url for n, url in enumerate(urls, start=1)}
    query = signed_query(ctx, COMPLETE_PURPOSE, upload.id, oid, expires_in=expiry)
    return {"href": f"{lfs_url}/complete/{upload.id}/{oid}?{query}", "header": header}


def batch(
    session: Session,
    ctx: Context,
    principal: Principal,
    namespace: str,
    name: str,
    body: dict[str, Any],
    base_url: str,
) -> dict[str, Any]:
    """``POST /{repo}.git/info/lfs/objects/batch``: per object, no actions or how to upload it.

    The upload session is added to ``session`` (committed by the caller).
    """
    ns, adapter = writable_repo(session, principal, namespace, name)
    sizes, errors = _objects(ctx, body)
    upload, present = open_blob_upload(session, ctx, principal, ns.name, adapter.name, sizes)
    lfs_url = lfs_base(ctx.settings.public_url or base_url, ns.name, adapter.name)
    multipart: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for oid, size in sizes.items():
        item: dict[str, Any] = {"oid": oid, "size": size}
        if oid not in present:
            assert upload is not None, "a blob to send has an upload session"
            item["actions"] = {
                "upload": _upload_action(ctx, upload, oid, size, lfs_url, multipart),
                "verify": {"href": f"{lfs_url}/verify/{upload.id}"},
            }
        out.append(item)
    if upload is not None and multipart:
        upload.multipart = multipart
    return {"transfer": "basic", "objects": out + errors, "hash_algo": "sha256"}


def _checked_oid(oid: Any) -> str:
    if not isinstance(oid, str) or not _OID.fullmatch(oid):
        raise InvalidRequest("'oid' must be a sha256 as 64 lowercase hex digits")
    return oid


def verify(
    session: Session,
    ctx: Context,
    principal: Principal,
    namespace: str,
    name: str,
    upload_id: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    """The ``verify`` action: check the blob's size and sha256, then promote it.

    Only the caller's own upload session of this repo is found (404 otherwise). A
    blob already received (the local store's PUT verified it) answers at once.
    """
    ns, adapter = writable_repo(session, principal, namespace, name)
    oid = _checked_oid(body.get("oid"))
    upload = open_upload(session, principal, upload_id)
    if (upload.namespace, upload.name) != (ns.name, adapter.name):
        raise NotFound(f"upload '{upload_id}' not found in {ns.name}/{adapter.name}")
    size = body.get("size")
    declared = declared_size(upload, oid)
    if size is not None and size != declared:
        raise BlobMismatch(f"blob {oid}: verify names {size} bytes, the batch declared {declared}")
    return complete_upload_blob(session, ctx, upload, oid, None)


def complete_multipart(
    session: Session,
    ctx: Context,
    upload_id: str,
    oid: str,
    signature: tuple[int, str],
    body: dict[str, Any],
) -> dict[str, Any]:
    """The multipart ``upload`` href: assemble the parts (signed URL: the client sends no token)."""
    expires, sig = signature
    check_signed(ctx, COMPLETE_PURPOSE, upload_id, oid, expires=expires, signature=sig)
    upload = find_open_upload(session, upload_id)
    parts = body.get("parts")
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest("'parts' must list the uploaded parts ({partNumber, etag})")
    numbered = []
    for part in parts:
        number = part.get("partNumber") if isinstance(part, dict) else None
        etag = part.get("etag") if isinstance(part, dict) else None
        if not isinstance(number, int) or not 1 <= number <= 10_000 or not isinstance(etag, str):
            raise InvalidRequest("each part needs 'partNumber' (1-10000) and 'etag' (a string)")
        numbered.append((number, etag))
    return complete_upload_blob(session, ctx, upload, _checked_oid(oid), numbered)


def open_signed_put(
    session: Session, ctx: Context, upload_id: str, oid: str, signature: tuple[int, str]
) -> tuple[int, bool]:
    """The local store's PUT, authorized by its signature: ``(declared size, already received)``."""
    expires, sig = signature
    check_signed(ctx, PUT_PURPOSE, upload_id, oid, expires=expires, signature=sig)
    upload = find_open_upload(session, upload_id)
    oid = _checked_oid(oid)
    return declared_size(upload, oid), not needs_bytes(session, upload, oid)
