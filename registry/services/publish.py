"""Two-phase publish (DESIGN §4): declare files, send missing blobs, commit atomically.

* ``create_upload`` validates the declared manifest and answers, per distinct
  blob, whether it is already stored and how to send it if not.
* ``complete_blob`` / ``store_received_blob`` verify one blob (size, sha256) and
  promote it into the content-addressed store at once, so a killed push resumes.
* ``commit_upload`` validates the content (safetensors headers, PEFT config,
  base-model shapes) outside any write transaction, then inserts the version,
  its files and lineage in one transaction; the same manifest digest again
  returns the existing version.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlmodel import Session, func, select

from loreg.errors import InvalidRefError
from loreg.manifest import manifest_digest
from loreg.refs import validate_adapter_name
from registry.auth import Principal, check_visible, require_scope
from registry.errors import (
    BlobMismatch,
    Conflict,
    InvalidConfig,
    InvalidManifest,
    InvalidName,
    MissingBlob,
    NotFound,
    PayloadTooLarge,
    PickleRefused,
    ShapeMismatch,
    UploadExpired,
)
from registry.models import (
    Adapter,
    BaseModelFile,
    BaseModelRecord,
    Blob,
    LineageEdge,
    Namespace,
    UploadBlob,
    UploadSession,
    Version,
    VersionFile,
    utcnow,
)
from registry.schemas import FileEntry, UploadRequest
from registry.services import audit, catalog
from registry.services.base_models import base_model_view
from registry.services.context import Context
from registry.storage.base import blob_key, staging_key
from registry.validation.base_model import check_adapter_fits_base, linear_modules_of_headers
from registry.validation.content import (
    HEAD_BYTES,
    JSON,
    JSONL,
    SAFETENSORS,
    check_file,
    file_kind,
    pickle_content,
)
from registry.validation.dataset import validate_jsonl
from registry.validation.paths import check_manifest_paths, refuse_pickle, validate_file_path
from registry.validation.peft_config import parse_adapter_config, validate_lora_config
from registry.validation.safetensors_header import SafetensorsHeader, read_safetensors_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_CONFIG = "config.json"
MAX_S3_PARTS = 10_000
HASH_CHUNK = 8 * 2**20
# Concurrent commits to one adapter race for the next version number.
COMMIT_ATTEMPTS = 25
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
#: Columns a base model's config.json fills (registry.models.BaseModelRecord).
_BASE_CONFIG_FIELDS = {"architectures": 128, "model_type": 64}


# --------------------------------------------------------------------------- phase 1


def _validate_files(ctx: Context, req: UploadRequest) -> list[FileEntry]:
    seen: dict[str, FileEntry] = {}
    sizes: dict[str, int] = {}
    if len(req.files) > ctx.settings.max_files_per_version:
        raise InvalidManifest(
            f"{len(req.files)} files declared; at most {ctx.settings.max_files_per_version}"
        )
    for entry in req.files:
        path = validate_file_path(entry.path)
        refuse_pickle(path)
        file_kind(path)  # an allow-list of kinds: refused here, before any byte is sent
        if path in seen:
            raise InvalidManifest(f"file '{path}' is listed twice")
        if entry.size > ctx.settings.max_file_bytes:
            raise PayloadTooLarge(
                f"file '{path}' is {entry.size} bytes; the limit is {ctx.settings.max_file_bytes}"
            )
        if sizes.setdefault(entry.sha256, entry.size) != entry.size:
            raise InvalidManifest(f"sha256 {entry.sha256} is declared with two different sizes")
        seen[path] = FileEntry(path=path, size=entry.size, sha256=entry.sha256)
    check_manifest_paths(list(seen))
    paths = set(seen)
    if req.kind == "adapter":
        missing = [p for p in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if p not in paths]
        if missing:
            raise InvalidManifest(
                f"an adapter needs {', '.join(missing)} at the top of the folder "
                "(as written by PEFT save_pretrained)"
            )
    elif req.kind == "dataset":
        if not any(p.endswith(".jsonl") for p in paths):
            raise InvalidManifest("a dataset needs at least one .jsonl file (chat JSONL)")
    else:
        if BASE_CONFIG not in paths or not any(p.endswith(".safetensors") for p in paths):
            raise InvalidManifest(
                "a base model needs config.json and at least one .safetensors file"
            )
    return list(seen.values())


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
        return {
            "method": "put",
            "url": put.url,
            "headers": put.headers,
            "complete_url": complete_url,
        }
    part_size = max(settings.multipart_part_size_bytes, math.ceil(size / MAX_S3_PARTS))
    mp_id = store.create_multipart(key)
    multipart[sha] = mp_id
    parts = [
        {"part_number": n, "url": store.presign_part(key, mp_id, n, expires_in=expiry).url}
        for n in range(1, math.ceil(size / part_size) + 1)
    ]
    return {
        "method": "multipart",
        "url": None,
        "headers": {},
        "part_size": part_size,
        "parts": parts,
        "complete_url": complete_url,
    }


def held_by(session: Session, principal: Principal, shas: Any) -> set[str]:
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
            select(BaseModelFile.blob_sha256).where(BaseModelFile.blob_sha256.in_(wanted))
        ).all()
    )
    rows = session.exec(
        select(VersionFile.blob_sha256, Namespace.name, Namespace.private)
        .join(Version, Version.id == VersionFile.version_id)
        .join(Adapter, Adapter.id == Version.adapter_id)
        .join(Namespace, Namespace.id == Adapter.namespace_id)
        .where(VersionFile.blob_sha256.in_(wanted))
    ).all()
    held |= {sha for sha, ns, private in rows if not private or principal.can(ns, "read")}
    if principal.name is not None:
        held |= set(
            session.exec(
                select(UploadBlob.sha256)
                .join(UploadSession, UploadSession.id == UploadBlob.upload_id)
                .where(UploadSession.created_by == principal.name, UploadBlob.sha256.in_(wanted))
            ).all()
        )
    return held


def create_upload(
    session: Session,
    ctx: Context,
    principal: Principal,
    req: UploadRequest,
    base_url: str,
    *,
    internal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Phase 1: validate the manifest, record the session, say which blobs to send and how.

    ``internal`` (workers only, never from HTTP): ``job_id`` (idempotency key of a
    job's result) and ``lineage`` (edges with resolved parent ids and params).
    """
    if req.kind in ("adapter", "dataset"):
        try:
            validate_adapter_name(req.name)
        except InvalidRefError as exc:
            raise InvalidName(str(exc)) from exc
        namespace: str | None = _target_namespace(session, principal, req)
        for parent in req.parents:
            catalog.resolve_ref(session, principal, parent.ref)
    else:
        catalog.checked_base_model_name(req.name)
        namespace = None
        require_scope(principal, "*", False, "write")
    files = _validate_files(ctx, req)
    sizes = {f.sha256: f.size for f in files}
    stored = {
        b.sha256: b.size
        for b in session.exec(select(Blob).where(Blob.sha256.in_(list(sizes)))).all()
    }
    reusable = held_by(session, principal, stored)
    stored = {sha: size for sha, size in stored.items() if sha in reusable}
    for sha, size in stored.items():
        if sizes[sha] != size:
            raise BlobMismatch(f"blob {sha} is stored with size {size}, declared {sizes[sha]}")
    spec = req.model_dump(mode="json")
    spec["namespace"] = namespace
    spec["files"] = [f.model_dump() for f in files]
    spec["present"] = sorted(stored)
    spec.update(internal or {})
    upload = UploadSession(
        kind=req.kind,
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


# --------------------------------------------------------------------------- phase 2


def _check_upload_id(upload_id: str) -> None:
    """404 for an id that cannot be one (never hand NUL or 100k characters to the database)."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise NotFound(f"upload {upload_id[:40]!r} not found (upload ids are 32 hex digits)")


def open_upload(session: Session, principal: Principal, upload_id: str) -> UploadSession:
    """The upload session if it is open and the caller created it (or holds admin)."""
    _check_upload_id(upload_id)
    upload = session.get(UploadSession, upload_id)
    if upload is None:
        raise NotFound(f"upload '{upload_id}' not found")
    if upload.created_by != principal.name and not principal.can(upload.namespace or "*", "admin"):
        raise NotFound(f"upload '{upload_id}' not found")
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
    """Record the blob (once) and that this upload delivered it."""
    with Session(ctx.engine) as session:
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
    upload = open_upload(session, principal, upload_id)
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
        except Exception as exc:  # noqa: BLE001 - S3 answers InvalidPart, NoSuchUpload, ...
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


# --------------------------------------------------------------------------- phase 3


@dataclass
class _Validated:
    files: list[dict[str, Any]]
    config: dict[str, Any] | None
    digest: str
    summary: dict[str, Any]
    base_model: str | None
    base_model_id: int | None
    modules: dict[str, list[int]] | None = None
    size: int = 0


def _read_small(ctx: Context, sha: str, size: int, path: str) -> bytes:
    limit = ctx.settings.max_config_bytes
    if size > limit:
        raise PayloadTooLarge(f"'{path}' is {size} bytes; config files are limited to {limit}")
    return b"".join(ctx.store.open(blob_key(sha)))


def _header(ctx: Context, f: dict[str, Any]) -> SafetensorsHeader:
    key = blob_key(f["sha256"])
    return read_safetensors_header(
        lambda start, end: ctx.store.read_range(key, start, end),
        int(f["size"]),
        max_header_bytes=ctx.settings.max_safetensors_header_bytes,
        path=f["path"],
    )


def _check_blobs_stored(session: Session, ctx: Context, upload: UploadSession) -> None:
    files = upload.spec["files"]
    shas = {f["sha256"] for f in files}
    have = set(session.exec(select(Blob.sha256).where(Blob.sha256.in_(list(shas)))).all())
    received = set(
        session.exec(select(UploadBlob.sha256).where(UploadBlob.upload_id == upload.id)).all()
    )
    have &= received | set(upload.spec.get("present", ()))
    missing = [f["path"] for f in files if f["sha256"] not in have]
    missing += [
        f["path"]
        for f in files
        if f["sha256"] in have and ctx.store.stat(blob_key(f["sha256"])) is None
    ]
    if missing:
        raise MissingBlob(
            f"{len(missing)} file(s) were never uploaded: {', '.join(sorted(set(missing)))}",
            details=sorted(set(missing)),
        )


def _check_contents(ctx: Context, upload: UploadSession) -> None:
    """Every file must be an accepted kind and hold what its name says (no pickle anywhere).

    The adapter's weights and a base model's shards are parsed by their kind's
    validation; a dataset's JSONL by :func:`validate_jsonl`.
    """
    for f in upload.spec["files"]:
        path, size, key = f["path"], int(f["size"]), blob_key(f["sha256"])
        kind = file_kind(path)
        if path == (BASE_CONFIG if upload.kind == "base_model" else ADAPTER_CONFIG):
            continue  # parsed by its kind's validation (invalid_config)
        if kind == SAFETENSORS:
            if not (
                (upload.kind == "adapter" and path == ADAPTER_WEIGHTS)
                or upload.kind == "base_model"
            ):
                _header(ctx, f)  # its header is parsed and checked in full
            continue
        head = ctx.store.read_range(key, 0, HEAD_BYTES) if size else b""
        found = pickle_content(head, complete=size <= HEAD_BYTES, opcodes=kind not in (JSON, JSONL))
        if found is not None:
            raise PickleRefused(
                f"file '{path}' is {found}, which can run code when loaded; "
                "only safetensors weights and plain-text files are accepted"
            )
        if upload.kind == "dataset" and path.endswith(".jsonl"):
            continue  # validate_jsonl reads it as chat records
        check_file(kind, ctx.store.open(key, chunk_size=HASH_CHUNK) if size else iter(()), path)


def _validate_adapter(session: Session, ctx: Context, upload: UploadSession) -> _Validated:
    files = upload.spec["files"]
    by_path = {f["path"]: f for f in files}
    cfg = by_path[ADAPTER_CONFIG]
    config = parse_adapter_config(_read_small(ctx, cfg["sha256"], int(cfg["size"]), ADAPTER_CONFIG))
    header = _header(ctx, by_path[ADAPTER_WEIGHTS])  # other safetensors: _check_contents
    lora = validate_lora_config(config, header.tensors, header.metadata)
    base_name = upload.spec.get("base_model") or lora.base_model_name_or_path
    base_id = None
    if base_name:
        base = session.exec(
            select(BaseModelRecord).where(BaseModelRecord.name == base_name)
        ).first()
        if base is not None:
            base_id = base.id
            problems = check_adapter_fits_base(lora, base.modules or {})
            if problems:
                raise ShapeMismatch(
                    f"adapter does not fit base model '{base_name}': "
                    + "; ".join(problems[:20])
                    + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""),
                    details=problems,
                )
    summary = {
        "r": lora.r,
        "lora_alpha": lora.lora_alpha,
        "use_rslora": lora.use_rslora,
        "target_modules": lora.target_modules,
        "parameter_count": lora.parameter_count,
        "modules": len(lora.modules),
        "tensors": len(header.tensors),
    }
    digest = manifest_digest([(f["path"], f["sha256"], int(f["size"])) for f in files], config)
    return _Validated(
        files, config, digest, summary, base_name, base_id, size=sum(int(f["size"]) for f in files)
    )


def _validate_dataset(ctx: Context, upload: UploadSession) -> _Validated:
    files = upload.spec["files"]
    stats: dict[str, Any] = {"records": 0, "files": {}}
    for f in files:
        if f["path"].endswith(".jsonl"):
            count = validate_jsonl(ctx.store.open(blob_key(f["sha256"])), f["path"])
            stats["files"][f["path"]] = count
            stats["records"] += count
    digest = manifest_digest([(f["path"], f["sha256"], int(f["size"])) for f in files], None)
    return _Validated(
        files, None, digest, stats, None, None, size=sum(int(f["size"]) for f in files)
    )


def _validate_base_model(ctx: Context, upload: UploadSession) -> _Validated:
    files = upload.spec["files"]
    by_path = {f["path"]: f for f in files}
    cfg = by_path[BASE_CONFIG]
    config = parse_adapter_config(_read_small(ctx, cfg["sha256"], int(cfg["size"]), BASE_CONFIG))
    for field, limit in _BASE_CONFIG_FIELDS.items():
        value = config.get(field)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and len(text) > limit:
                raise InvalidConfig(
                    f"config.json field '{field}' holds a {len(text)}-character name; "
                    f"the limit is {limit}"
                )
    headers = [_header(ctx, f) for f in files if file_kind(f["path"]) == SAFETENSORS]
    modules = linear_modules_of_headers(headers)
    if not modules:
        raise InvalidConfig("no 2-D '<module>.weight' tensors found: is this a model checkpoint?")
    digest = manifest_digest([(f["path"], f["sha256"], int(f["size"])) for f in files], config)
    return _Validated(
        files,
        config,
        digest,
        {},
        upload.name,
        None,
        modules=modules,
        size=sum(int(f["size"]) for f in files),
    )


def commit_upload(
    ctx: Context, principal: Principal, upload_id: str, base_url: str
) -> tuple[bool, dict[str, Any]]:
    """Phase 3: validate content, then write the version (or base model) atomically.

    Returns ``(created, view)``; ``created`` is False when the same digest already exists.
    """
    _check_upload_id(upload_id)
    with Session(ctx.engine, expire_on_commit=False) as session:
        upload = session.get(UploadSession, upload_id)
        if upload is not None and upload.status == "committed" and upload.result:
            return False, _committed_view(session, ctx, principal, upload, base_url)
        upload = open_upload(session, principal, upload_id)
        _check_blobs_stored(session, ctx, upload)
        _check_contents(ctx, upload)
        if upload.kind == "adapter":
            validated = _validate_adapter(session, ctx, upload)
        elif upload.kind == "dataset":
            validated = _validate_dataset(ctx, upload)
        else:
            validated = _validate_base_model(ctx, upload)
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            with Session(ctx.engine, expire_on_commit=False) as session:
                upload = open_upload(session, principal, upload_id)
                if upload.kind in ("adapter", "dataset"):
                    created, view = _write_version(
                        session, ctx, principal, upload, validated, base_url
                    )
                else:
                    created, view = _write_base_model(
                        session, ctx, principal, upload, validated, base_url
                    )
                session.commit()
                return created, view
        except sa.exc.IntegrityError:
            # Another commit took the version number (or stored the same row) first;
            # each round lets at least one concurrent writer through, so retrying
            # with a jittered pause converges.
            if attempt == COMMIT_ATTEMPTS - 1:
                raise Conflict("the adapter changed concurrently; retry the commit") from None
            time.sleep(random.uniform(0, min(0.01 * 2**attempt, 0.25)))
    raise AssertionError("unreachable")  # pragma: no cover


def _committed_view(
    session: Session, ctx: Context, principal: Principal, upload: UploadSession, base_url: str
) -> dict[str, Any]:
    if upload.kind in ("adapter", "dataset"):
        version = session.get(Version, upload.result["version_id"])
        adapter = session.get(Adapter, version.adapter_id)
        ns = session.get(Namespace, adapter.namespace_id)
        check_visible(principal, ns.name, ns.private)
        return catalog.version_view(session, ctx, ns, adapter, version, base_url, principal)
    bm = session.get(BaseModelRecord, upload.result["base_model_id"])
    return base_model_view(session, ctx, bm, base_url)


def _write_version(
    session: Session,
    ctx: Context,
    principal: Principal,
    upload: UploadSession,
    v: _Validated,
    base_url: str,
) -> tuple[bool, dict[str, Any]]:
    spec = upload.spec
    ns = catalog.get_namespace(session, upload.namespace)
    if ns is None:
        ns = Namespace(name=upload.namespace, private=False)
        session.add(ns)
        session.flush()
        audit.record(session, principal, "namespace.create", namespace=ns.name)
    require_scope(principal, ns.name, ns.private, "write")
    adapter = session.exec(
        select(Adapter).where(Adapter.namespace_id == ns.id, Adapter.name == upload.name)
    ).first()
    if adapter is None:
        adapter = Adapter(namespace_id=ns.id, name=upload.name, kind=upload.kind)
        session.add(adapter)
        session.flush()
    elif adapter.kind != upload.kind:
        raise Conflict(
            f"'{ns.name}/{adapter.name}' is a {adapter.kind}, not a {upload.kind}: "
            "choose another name"
        )
    job_id = spec.get("job_id")
    existing = None
    if job_id:  # a job's result is registered once, however often the job runs
        existing = session.exec(select(Version).where(Version.job_id == job_id)).first()
    existing = (
        existing
        or session.exec(
            select(Version).where(Version.adapter_id == adapter.id, Version.digest == v.digest)
        ).first()
    )
    if existing is not None:
        upload.status = "committed"
        upload.result = {"version_id": existing.id}
        session.add(upload)
        return False, catalog.version_view(
            session, ctx, ns, adapter, existing, base_url, principal
        )
    parents = [
        (catalog.resolve_ref(session, principal, p["ref"])[2], p) for p in spec.get("parents", [])
    ]
    latest = session.exec(
        select(func.max(Version.number)).where(Version.adapter_id == adapter.id)
    ).one()
    version = Version(
        adapter_id=adapter.id,
        number=(latest or 0) + 1,
        digest=v.digest,
        config=v.config,
        summary=v.summary,
        meta=spec.get("metadata") or {},
        description=spec.get("description"),
        base_model=v.base_model,
        base_model_id=v.base_model_id,
        size=v.size,
        job_id=job_id,
        created_by=principal.name,
    )
    session.add(version)
    session.flush()
    for edge in spec.get("lineage") or []:
        session.add(LineageEdge(child_version_id=version.id, **edge))
    for f in v.files:
        session.add(
            VersionFile(
                version_id=version.id, path=f["path"], blob_sha256=f["sha256"], size=int(f["size"])
            )
        )
    if v.base_model_id is not None:
        session.add(
            LineageEdge(
                child_version_id=version.id,
                relation="trained_from",
                parent_base_model_id=v.base_model_id,
                params={},
            )
        )
    for parent_version, p in parents:
        session.add(
            LineageEdge(
                child_version_id=version.id,
                relation=p["relation"],
                parent_version_id=parent_version.id,
                params=p.get("params") or {},
            )
        )
    adapter.updated_at = utcnow()
    if spec.get("description"):
        adapter.description = spec["description"]
    if v.base_model:
        adapter.base_model = v.base_model
    session.add(adapter)
    upload.status = "committed"
    upload.result = {"version_id": version.id}
    session.add(upload)
    audit.record(
        session,
        principal,
        "version.publish",
        namespace=ns.name,
        target=f"{adapter.name}-v{version.number}",
        detail={"digest": v.digest},
    )
    session.flush()
    return True, catalog.version_view(session, ctx, ns, adapter, version, base_url, principal)


def _write_base_model(
    session: Session,
    ctx: Context,
    principal: Principal,
    upload: UploadSession,
    v: _Validated,
    base_url: str,
) -> tuple[bool, dict[str, Any]]:
    job_id = upload.spec.get("job_id")
    existing = None
    if job_id:
        existing = session.exec(
            select(BaseModelRecord).where(BaseModelRecord.job_id == job_id)
        ).first()
    existing = (
        existing
        or session.exec(select(BaseModelRecord).where(BaseModelRecord.name == upload.name)).first()
    )
    if existing is not None:
        if existing.digest != v.digest and not (job_id and existing.job_id == job_id):
            raise Conflict(
                f"base model '{upload.name}' is already registered with other content "
                f"({existing.digest}); register it under another name"
            )
        upload.status = "committed"
        upload.result = {"base_model_id": existing.id}
        session.add(upload)
        return False, base_model_view(session, ctx, existing, base_url)
    architectures = v.config.get("architectures") or [None]
    bm = BaseModelRecord(
        name=upload.name,
        revision=upload.spec.get("revision"),
        architecture=architectures[0] if isinstance(architectures, list) else None,
        model_type=v.config.get("model_type")
        if isinstance(v.config.get("model_type"), str)
        else None,
        config=v.config,
        modules=v.modules,
        meta=upload.spec.get("metadata") or None,
        digest=v.digest,
        size=v.size,
        job_id=job_id,
        created_by=principal.name,
    )
    session.add(bm)
    session.flush()
    for edge in upload.spec.get("lineage") or []:
        session.add(LineageEdge(child_base_model_id=bm.id, **edge))
    for f in v.files:
        session.add(
            BaseModelFile(
                base_model_id=bm.id, path=f["path"], blob_sha256=f["sha256"], size=int(f["size"])
            )
        )
    upload.status = "committed"
    upload.result = {"base_model_id": bm.id}
    session.add(upload)
    audit.record(
        session, principal, "base_model.publish", target=bm.name, detail={"digest": v.digest}
    )
    session.flush()
    return True, base_model_view(session, ctx, bm, base_url)
