"""What may be published: the manifest (phase 1) and the content (phase 3) of an upload.

* :func:`check_manifest` refuses, before any byte is sent, paths that are unsafe
  or pickle, kinds of file not accepted, duplicates, files over the size limit and
  manifests missing what their kind needs.
* :func:`check_blobs_stored`, :func:`check_contents` and :func:`validate` read the
  stored blobs at commit: every file holds what its name says (no pickle
  anywhere), the PEFT config matches the weights, an adapter fits its registered
  base model. They run outside any write transaction and return a
  :class:`Validated` for the database writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from loreg.manifest import manifest_digest
from loreg.vocabulary import ArtifactKind
from registry.errors import (
    InvalidConfig,
    InvalidManifest,
    MissingBlob,
    PayloadTooLarge,
    PickleRefused,
    ShapeMismatch,
)
from registry.models import BaseModelRecord, Blob, UploadBlob, UploadSession
from registry.schemas import FileEntry, UploadRequest
from registry.services import fsck
from registry.services.context import Context
from registry.storage.base import blob_key
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
from registry.validation.peft_config import (
    LoraSummary,
    parse_adapter_config,
    validate_lora_config,
)
from registry.validation.safetensors_header import SafetensorsHeader, read_safetensors_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_CONFIG = "config.json"
HASH_CHUNK = 8 * 2**20
#: Columns a base model's config.json fills (registry.models.BaseModelRecord).
_BASE_CONFIG_FIELDS = {"architectures": 128, "model_type": 64}
#: Most shape problems an error message lists (``details`` holds them all).
_SHOWN_PROBLEMS = 20


# --------------------------------------------------------------------------- manifest


def check_manifest(ctx: Context, req: UploadRequest) -> list[FileEntry]:
    """The declared files, paths normalised; raises for a manifest that cannot be published."""
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
    _check_required_files(req.kind, set(seen))
    return list(seen.values())


def _check_required_files(kind: ArtifactKind, paths: set[str]) -> None:
    """Raise unless the manifest holds the files its kind needs."""
    if kind == ArtifactKind.ADAPTER:
        missing = [p for p in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if p not in paths]
        if missing:
            raise InvalidManifest(
                f"an adapter needs {', '.join(missing)} at the top of the folder "
                "(as written by PEFT save_pretrained)"
            )
    elif kind == ArtifactKind.DATASET:
        if not any(p.endswith(".jsonl") for p in paths):
            raise InvalidManifest("a dataset needs at least one .jsonl file (chat JSONL)")
    elif BASE_CONFIG not in paths or not any(p.endswith(".safetensors") for p in paths):
        raise InvalidManifest("a base model needs config.json and at least one .safetensors file")


def check_declared_file(ctx: Context, path: str, size: int, head: bytes) -> str:
    """Refuse one file from its name, size and first bytes alone, as a publish would.

    For callers that see a file before its upload (the Hub's preupload call sends
    the first 512 bytes): the path rules, pickle names, the allow-list of kinds, the
    size limit, and a pickle format found in ``head``. Only what ``head`` proves is
    refused; the commit checks the whole file again. Returns the normalised path.
    """
    path = validate_file_path(path)
    refuse_pickle(path)
    file_type = file_kind(path)
    if size > ctx.settings.max_file_bytes:
        raise PayloadTooLarge(
            f"file '{path}' is {size} bytes; the limit is {ctx.settings.max_file_bytes}"
        )
    # complete=True: a header-less pickle is refused only once its STOP is in ``head``
    refuse_pickle_content(path, file_type, head, complete=True)
    return path


def refuse_pickle_content(path: str, file_type: str, head: bytes, *, complete: bool) -> None:
    """PickleRefused when ``head`` (a file's first bytes) is a pickle-bearing format.

    Safetensors files are skipped (their header parser checks them); ``complete``
    says ``head`` is the whole file.
    """
    if file_type == SAFETENSORS:
        return
    found = pickle_content(head, complete=complete, opcodes=file_type not in (JSON, JSONL))
    if found is not None:
        raise PickleRefused(
            f"file '{path}' is {found}, which can run code when loaded; "
            "only safetensors weights and plain-text files are accepted"
        )


# --------------------------------------------------------------------------- content


@dataclass
class Validated:
    """What content validation learnt, for the database writes."""

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


def _digest(files: list[dict[str, Any]], config: dict[str, Any] | None) -> str:
    return manifest_digest([(f["path"], f["sha256"], int(f["size"])) for f in files], config)


def _total_size(files: list[dict[str, Any]]) -> int:
    return sum(int(f["size"]) for f in files)


def check_blobs_stored(session: Session, ctx: Context, upload: UploadSession) -> None:
    """Raise MissingBlob unless every file's blob was received (or offered) and is still stored.

    Blobs found gone from the store are marked for fsck, so the next upload asks for them.
    """
    files = upload.spec["files"]
    shas = {f["sha256"] for f in files}
    have = set(session.exec(select(Blob.sha256).where(col(Blob.sha256).in_(list(shas)))).all())
    received = set(
        session.exec(select(UploadBlob.sha256).where(UploadBlob.upload_id == upload.id)).all()
    )
    have &= received | set(upload.spec.get("present", ()))
    missing = sorted({f["path"] for f in files if f["sha256"] not in have})
    sizes = {f["sha256"]: int(f["size"]) for f in files if f["sha256"] in have}
    lost = fsck.stat_blobs(ctx.store, sizes)
    if lost:  # gone from the store since the upload began: the next upload re-sends them
        fsck.mark(ctx.engine, lost)
    gone = sorted({f["path"] for f in files if f["sha256"] in lost})
    if missing or gone:
        parts = []
        if missing:
            parts.append(f"{len(missing)} file(s) were never uploaded: {', '.join(missing)}")
        if gone:
            parts.append(
                f"{len(gone)} file(s) are no longer in the object store: {', '.join(gone)} "
                "(start a new upload: it asks for them again)"
            )
        raise MissingBlob("; ".join(parts), details=sorted({*missing, *gone}))


def check_contents(ctx: Context, upload: UploadSession) -> None:
    """Every file must be an accepted kind and hold what its name says (no pickle anywhere).

    The adapter's weights and a base model's shards are parsed by their kind's
    validation; a dataset's JSONL by :func:`validate_jsonl`.
    """
    kind = upload.kind
    own_config = BASE_CONFIG if kind == ArtifactKind.BASE_MODEL else ADAPTER_CONFIG
    for f in upload.spec["files"]:
        path, size, key = f["path"], int(f["size"]), blob_key(f["sha256"])
        file_type = file_kind(path)
        if path == own_config:
            continue  # parsed by its kind's validation (invalid_config)
        if file_type == SAFETENSORS:
            if not (
                (kind == ArtifactKind.ADAPTER and path == ADAPTER_WEIGHTS)
                or kind == ArtifactKind.BASE_MODEL
            ):
                _header(ctx, f)  # its header is parsed and checked in full
            continue
        head = ctx.store.read_range(key, 0, HEAD_BYTES) if size else b""
        refuse_pickle_content(path, file_type, head, complete=size <= HEAD_BYTES)
        if kind == ArtifactKind.DATASET and path.endswith(".jsonl"):
            continue  # validate_jsonl reads it as chat records
        chunks = ctx.store.open(key, chunk_size=HASH_CHUNK) if size else iter(())
        check_file(file_type, chunks, path)


def validate(session: Session, ctx: Context, upload: UploadSession) -> Validated:
    """Check every stored blob of the upload and validate its kind's content."""
    check_blobs_stored(session, ctx, upload)
    check_contents(ctx, upload)
    if upload.kind == ArtifactKind.ADAPTER:
        return _validate_adapter(session, ctx, upload)
    if upload.kind == ArtifactKind.DATASET:
        return _validate_dataset(ctx, upload)
    return _validate_base_model(ctx, upload)


def _check_fits_base(session: Session, lora: LoraSummary, base_name: str) -> int | None:
    """The id of the registered base model ``base_name`` (None if it is not registered).

    Raises ShapeMismatch when the adapter's modules do not fit it.
    """
    base = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == base_name)).first()
    if base is None:
        return None
    problems = check_adapter_fits_base(lora, base.modules or {})
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        raise ShapeMismatch(
            f"adapter does not fit base model '{base_name}': "
            + "; ".join(problems[:_SHOWN_PROBLEMS])
            + (f" (and {more} more)" if more > 0 else ""),
            details=problems,
        )
    return base.id


def _validate_adapter(session: Session, ctx: Context, upload: UploadSession) -> Validated:
    files = upload.spec["files"]
    by_path = {f["path"]: f for f in files}
    cfg = by_path[ADAPTER_CONFIG]
    config = parse_adapter_config(_read_small(ctx, cfg["sha256"], int(cfg["size"]), ADAPTER_CONFIG))
    header = _header(ctx, by_path[ADAPTER_WEIGHTS])  # other safetensors: check_contents
    lora = validate_lora_config(config, header.tensors, header.metadata)
    base_name = upload.spec.get("base_model") or lora.base_model_name_or_path
    base_id = _check_fits_base(session, lora, base_name) if base_name else None
    summary = {
        "r": lora.r,
        "lora_alpha": lora.lora_alpha,
        "use_rslora": lora.use_rslora,
        "target_modules": lora.target_modules,
        "parameter_count": lora.parameter_count,
        "modules": len(lora.modules),
        "tensors": len(header.tensors),
    }
    return Validated(
        files, config, _digest(files, config), summary, base_name, base_id, size=_total_size(files)
    )


def _validate_dataset(ctx: Context, upload: UploadSession) -> Validated:
    files = upload.spec["files"]
    stats: dict[str, Any] = {"records": 0, "files": {}}
    for f in files:
        if f["path"].endswith(".jsonl"):
            count = validate_jsonl(ctx.store.open(blob_key(f["sha256"])), f["path"])
            stats["files"][f["path"]] = count
            stats["records"] += count
    return Validated(files, None, _digest(files, None), stats, None, None, size=_total_size(files))


def _validate_base_model(ctx: Context, upload: UploadSession) -> Validated:
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
    return Validated(
        files,
        config,
        _digest(files, config),
        {},
        upload.name,
        None,
        modules=modules,
        size=_total_size(files),
    )
