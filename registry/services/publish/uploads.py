"""Phases 1 and 2 of a publish: negotiate an upload, then receive its blobs.

* :func:`create_upload` validates the declared manifest and answers, per distinct
  blob, whether it is already stored and how to send it if not.
* :func:`complete_blob` / :func:`store_received_blob` verify one blob (size,
  sha256) and promote it into the content-addressed store at once, so a killed
  push resumes.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlmodel import Session, col, select

from loreg.errors import InvalidRefError
from loreg.refs import validate_adapter_name
from loreg.vocabulary import ArtifactKind
from registry.auth import Principal, require_scope
from registry.errors import (
    BlobMismatch,
    InvalidManifest,
    InvalidName,
    MissingBlob,
    NotFound,
    UploadExpired,
)
from registry.models import (
    Adapter,
    BaseModelFile,
    Blob,
    Namespace,
    UploadBlob,
    UploadSession,
    Version,
    VersionFile,
    utcnow,
)
from registry.schemas import UploadRequest
from registry.services import catalog, fsck
from registry.services.context import Context
from registry.services.publish.checks import HASH_CHUNK, check_manifest
from registry.services.publish.specs import ParentLink
from registry.storage.base import InvalidMultipart, ObjectNotFound, blob_key, staging_key

MAX_S3_PARTS = 10_000
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


# --------------------------------------------------------------------------- phase 1


def _target_namespace(session: Session, principal: Principal, req: UploadRequest) -> str:
    name = catalog.checked_name(req.namespace or principal.default_namespace, "namespace")
    ns = catalog.get_namespace(session, name)
    if ns is None:
        if not principal.can(name, "write"):
            if principal.authenticated:
                raise NotFound(f"namespace '{name}' not found")
            require_scope(principal, name, False, "write")
        return name
    require_scope(principal, ns.name, ns.private, "write")
    return ns.name


def _upload_instructions(
    ctx: Context, upload_id: str, sha: str, size: int, base_url: str, multipart: dict[str, str]
) -> dict[str, Any]:
    store, settings = ctx.store, ctx.settings
    if not store.supports_presigned_urls:
        base = (settings.public_url or base_url).rstrip("/")
        return {
            "method": "api",
            "url": f"{base}/v1/uploads/{upload_id}/blobs/{sha}",
            "headers": {},
            "complete_url": None,
        }
    key = staging_key(upload_id, sha)
    complete_url = f"/v1/uploads/{upload_id}/blobs/{sha}/complete"
    expiry = settings.upload_expiry_s
    if size < settings.multipart_threshold_bytes:
        put = store.presign_put(key, expires_in=expiry, size=size, sha256=sha)
        assert put is not None, "a store that supports presigned URLs presigns a PUT"
        return {
            "method": "put",
            "url": put.url,
            "headers": put.headers,
            "complete_url": complete_url,
        }
    part_size, urls = start_multipart(ctx, upload_id, sha, size, multipart)
    parts = [{"part_number": n, "url": url} for n, url in enumerate(urls, start=1)]
    return {
        "method": "multipart",
        "url": None,
        "headers": {},
        "part_size": part_size,
        "parts": parts,
        "complete_url": complete_url,
    }


def start_multipart(
    ctx: Context, upload_id: str, sha: str, size: int, multipart: dict[str, str]
) -> tuple[int, list[str]]:
    """Start an S3 multipart upload of a blob into the upload's staging key.

    Records its id in ``multipart`` (the session's, so gc can abort it) and returns the
    part size and one presigned URL per part, in part order (the last part may be short).
    """
    store, settings = ctx.store, ctx.settings
    key = staging_key(upload_id, sha)
    part_size = max(settings.multipart_part_size_bytes, math.ceil(size / MAX_S3_PARTS))
    mp_id = store.create_multipart(key)
    multipart[sha] = mp_id
    expiry = settings.upload_expiry_s
    urls = [
        store.presign_part(key, mp_id, n, expires_in=expiry).url
        for n in range(1, math.ceil(size / part_size) + 1)
    ]
    return part_size, urls


def held_by(session: Session, principal: Principal, shas: Iterable[str]) -> set[str]:
    """Those of ``shas`` the caller may reuse without sending the bytes again.

    A blob is reusable when a version the caller can read holds it, a base model
    (public catalog entries) holds it, or the caller sent it in an earlier upload
    (a killed push resumes). Otherwise the caller must prove possession by
    uploading it, even if the store has it: a sha256 is not a read permission.
    """
    wanted = list(shas)
    if not wanted:
        return set()
    held = set(
        session.exec(
            select(BaseModelFile.blob_sha256).where(col(BaseModelFile.blob_sha256).in_(wanted))
        ).all()
    )
    rows = session.exec(
        select(VersionFile.blob_sha256, Namespace.name, Namespace.private)
        .join(Version, col(Version.id) == VersionFile.version_id)
        .join(Adapter, col(Adapter.id) == Version.adapter_id)
        .join(Namespace, col(Namespace.id) == Adapter.namespace_id)
        .where(col(VersionFile.blob_sha256).in_(wanted))
    ).all()
    held |= {sha for sha, ns, private in rows if not private or principal.can(ns, "read")}
    if principal.name is not None:
        held |= set(
            session.exec(
                select(UploadBlob.sha256)
                .join(UploadSession, col(UploadSession.id) == UploadBlob.upload_id)
                .where(
                    UploadSession.created_by == principal.name, col(UploadBlob.sha256).in_(wanted)
                )
            ).all()
        )
    return held


def _check_target(session: Session, principal: Principal, req: UploadRequest) -> str | None:
    """The namespace the upload writes to (None for a base model), once the caller may.

    Checks the name, the caller's write scope and that it may read each declared parent.
    """
    if req.kind == ArtifactKind.BASE_MODEL:
        catalog.checked_base_model_name(req.name)
        require_scope(principal, "*", False, "write")
        return None
    try:
        validate_adapter_name(req.name)
    except InvalidRefError as exc:
        raise InvalidName(str(exc)) from exc
    namespace = _target_namespace(session, principal, req)
    for parent in req.parents:
        catalog.resolve_ref(session, principal, parent.ref)
    return namespace


def _reusable(
    session: Session, ctx: Context, principal: Principal, sizes: dict[str, int]
) -> dict[str, int]:
    """Those declared blobs (sha256 -> size) the caller need not send: stored, theirs to
    reuse (:func:`held_by`) and still readable in the store."""
    stored = {
        b.sha256: b.size
        for b in session.exec(select(Blob).where(col(Blob.sha256).in_(list(sizes)))).all()
    }
    reusable = held_by(session, principal, stored)
    stored = {sha: size for sha, size in stored.items() if sha in reusable}
    for sha, size in stored.items():
        if sizes[sha] != size:
            raise BlobMismatch(f"blob {sha} is stored with size {size}, declared {sizes[sha]}")
    # The row alone is not proof: the store may have lost the bytes since. Such a
    # blob is asked for again; receiving it restores every version that shares it.
    lost = fsck.unusable_blobs(session, ctx, stored)
    return {sha: size for sha, size in stored.items() if sha not in lost}


def create_upload(
    session: Session, ctx: Context, principal: Principal, req: UploadRequest, base_url: str
) -> dict[str, Any]:
    """Phase 1: validate the manifest, record the session, say which blobs to send and how."""
    return negotiate(session, ctx, principal, req, base_url)


def negotiate(
    session: Session,
    ctx: Context,
    principal: Principal,
    req: UploadRequest,
    base_url: str,
    *,
    job_id: str | None = None,
    lineage: Sequence[ParentLink] = (),
) -> dict[str, Any]:
    """Phase 1 for every publisher; trusted server-side callers also pass these:

    ``job_id`` (the idempotency key of a job's result) and ``lineage`` (edges to
    parents already resolved), kept in the session until its commit writes them.
    HTTP callers never reach them (:func:`create_upload`).
    """
    namespace = _check_target(session, principal, req)
    files = check_manifest(ctx, req)
    sizes = {f.sha256: f.size for f in files}
    stored = _reusable(session, ctx, principal, sizes)
    spec = req.model_dump(mode="json")
    spec["namespace"] = namespace
    spec["files"] = [f.model_dump() for f in files]
    spec["present"] = sorted(stored)
    if job_id is not None:
        spec["job_id"] = job_id
    if lineage:
        spec["lineage"] = [link.to_spec() for link in lineage]
    upload = UploadSession(
        kind=req.kind.value,
        namespace=namespace,
        name=req.name,
        spec=spec,
        created_by=principal.name,
        expires_at=utcnow() + timedelta(seconds=ctx.settings.upload_expiry_s),
    )
    multipart: dict[str, str] = {}
    blobs = []
    for sha, size in sizes.items():
        item: dict[str, Any] = {"sha256": sha, "size": size, "present": sha in stored}
        if sha not in stored:
            item["upload"] = _upload_instructions(ctx, upload.id, sha, size, base_url, multipart)
        blobs.append(item)
    upload.multipart = multipart or None
    session.add(upload)
    return {"upload_id": upload.id, "expires_at": upload.expires_at.isoformat(), "blobs": blobs}


def open_blob_upload(
    session: Session,
    ctx: Context,
    principal: Principal,
    namespace: str,
    name: str,
    sizes: dict[str, int],
) -> tuple[UploadSession | None, set[str]]:
    """An upload session for loose blobs (sha256 -> size), with no manifest yet.

    For publishers that send bytes before they name the files (the Hub's LFS batch
    API). Returns the session (None when nothing needs sending; added to ``session``,
    not committed) and the blobs the caller need not send (:func:`held_by`, still
    stored). The caller checked its write scope on ``namespace``. Blobs received
    through the session become the caller's to reuse in a later publish; the session
    itself is never committed and expires like any other.
    """
    present = set(_reusable(session, ctx, principal, sizes))
    missing = {sha: size for sha, size in sizes.items() if sha not in present}
    if not missing:
        return None, present
    files = [{"path": f"blobs/{sha}", "sha256": sha, "size": size} for sha, size in missing.items()]
    upload = UploadSession(
        kind=ArtifactKind.ADAPTER.value,
        namespace=namespace,
        name=name,
        spec={"files": files, "present": [], "loose_blobs": True},
        created_by=principal.name,
        expires_at=utcnow() + timedelta(seconds=ctx.settings.upload_expiry_s),
    )
    session.add(upload)
    return upload, present


# --------------------------------------------------------------------------- phase 2


def check_upload_id(upload_id: str) -> None:
    """404 for an id that cannot be one (never hand NUL or 100k characters to the database)."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise NotFound(f"upload {upload_id[:40]!r} not found (upload ids are 32 hex digits)")


def open_upload(session: Session, principal: Principal, upload_id: str) -> UploadSession:
    """The upload session if it is open and the caller created it (or holds admin)."""
    check_upload_id(upload_id)
    upload = session.get(UploadSession, upload_id)
    if upload is None:
        raise NotFound(f"upload '{upload_id}' not found")
    if upload.created_by != principal.name and not principal.can(upload.namespace or "*", "admin"):
        raise NotFound(f"upload '{upload_id}' not found")
    return _check_open(upload)


def find_open_upload(session: Session, upload_id: str) -> UploadSession:
    """The upload session if it is open, whoever created it.

    Only for requests that a signed URL authorizes instead of a token.
    """
    check_upload_id(upload_id)
    upload = session.get(UploadSession, upload_id)
    if upload is None:
        raise NotFound(f"upload '{upload_id}' not found")
    return _check_open(upload)


def _check_open(upload: UploadSession) -> UploadSession:
    """The session if it is still open and not expired, else UploadExpired."""
    upload_id = upload.id
    if upload.status == "committed":
        raise UploadExpired(f"upload '{upload_id}' was already committed: start a new upload")
    if upload.status != "open":
        raise UploadExpired(f"upload '{upload_id}' is {upload.status}: start a new upload")
    expires_at = upload.expires_at
    if expires_at.tzinfo is None:  # SQLite returns naive datetimes
        expires_at = expires_at.replace(tzinfo=utcnow().tzinfo)
    if expires_at < utcnow():
        raise UploadExpired(f"upload '{upload_id}' expired: start a new upload")
    return upload


def declared_size(upload: UploadSession, sha: str) -> int:
    """The size the manifest declares for a blob; 404 if the blob is not in the manifest."""
    for f in upload.spec["files"]:
        if f["sha256"] == sha:
            return int(f["size"])
    raise NotFound(f"blob {sha} is not part of upload '{upload.id}'")


def _record_blob(ctx: Context, upload_id: str, sha: str, size: int) -> None:
    """Record the blob (once) and that this upload delivered it; its bytes are intact
    again, so an fsck mark on it (and on the versions sharing it) is cleared."""
    with Session(ctx.engine) as session:
        if fsck.clear_faults(session, [sha]):
            session.commit()
        if session.get(Blob, sha) is None:
            session.add(Blob(sha256=sha, size=size))
            try:
                session.commit()
            except sa.exc.IntegrityError:  # stored concurrently by another upload
                session.rollback()
        if session.get(UploadBlob, (upload_id, sha)) is None:
            session.add(UploadBlob(upload_id=upload_id, sha256=sha))
            try:
                session.commit()
            except sa.exc.IntegrityError:  # the same blob completed twice at once
                session.rollback()


def needs_bytes(session: Session, upload: UploadSession, sha: str) -> bool:
    """Whether this upload must still deliver ``sha`` (not offered as present, not received)."""
    if sha in upload.spec.get("present", ()):
        return False
    return session.get(UploadBlob, (upload.id, sha)) is None


def _hash_object(ctx: Context, key: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for chunk in ctx.store.open(key, chunk_size=HASH_CHUNK):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def complete_blob(
    session: Session,
    ctx: Context,
    principal: Principal,
    upload_id: str,
    sha: str,
    parts: list[tuple[int, str]] | None,
) -> dict[str, Any]:
    """Verify a blob sent to S3 through presigned URLs and promote it; idempotent."""
    return complete_upload_blob(
        session, ctx, open_upload(session, principal, upload_id), sha, parts
    )


def complete_upload_blob(
    session: Session,
    ctx: Context,
    upload: UploadSession,
    sha: str,
    parts: list[tuple[int, str]] | None,
) -> dict[str, Any]:
    """:func:`complete_blob` on a session already opened (and authorized) by the caller."""
    size = declared_size(upload, sha)
    if not needs_bytes(session, upload, sha):
        return {"sha256": sha, "size": size, "present": True}
    key = staging_key(upload.id, sha)
    mp_id = (upload.multipart or {}).get(sha)
    if mp_id is not None and ctx.store.stat(key) is None:
        if not parts:
            raise InvalidManifest(f"blob {sha} was sent in parts: list them in 'parts'")
        try:
            ctx.store.complete_multipart(key, mp_id, sorted(parts))
        except (InvalidMultipart, ObjectNotFound) as exc:  # InvalidPart, NoSuchUpload, ...
            raise BlobMismatch(f"could not assemble the parts of blob {sha}: {exc}") from exc
    info = ctx.store.stat(key)
    if info is None:
        raise MissingBlob(f"blob {sha} was not received: upload it before completing")
    if info.size != size:
        ctx.store.delete(key)
        raise BlobMismatch(f"blob {sha}: received {info.size} bytes, declared {size}")
    actual = info.sha256 or _hash_object(ctx, key)[0]
    if actual != sha:
        ctx.store.delete(key)
        raise BlobMismatch(f"blob {sha}: the bytes received hash to {actual}")
    ctx.store.copy(key, blob_key(sha))
    ctx.store.delete(key)
    _record_blob(ctx, upload.id, sha, size)
    return {"sha256": sha, "size": size, "present": True}


def store_received_blob(
    ctx: Context, upload_id: str, sha: str, size: int, fileobj: BinaryIO
) -> dict[str, Any]:
    """Store bytes already received and verified by the API (the ``api`` upload method)."""
    ctx.store.put(blob_key(sha), fileobj, size=size, sha256=sha)
    _record_blob(ctx, upload_id, sha, size)
    return {"sha256": sha, "size": size, "present": True}
