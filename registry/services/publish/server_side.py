"""One entry for trusted server-side publishers: job results now, the Hub write side next."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from registry.auth import Principal
from registry.errors import MissingBlob
from registry.schemas import FileEntry, UploadRequest
from registry.services.context import Context
from registry.services.publish.checks import HASH_CHUNK
from registry.services.publish.specs import PublishFile, PublishSpec, StoredBlob
from registry.services.publish.uploads import negotiate, store_received_blob
from registry.services.publish.versions import commit_upload


@dataclass(frozen=True)
class _Staged:
    """A file ready to publish: a local copy (None for a stored blob), its size and sha256."""

    path: str
    local: Path | None
    size: int
    sha256: str


def _hash_file(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


@contextmanager
def _staged(files: Sequence[PublishFile]) -> Iterator[list[_Staged]]:
    """Every file as a local file with its size and sha256 (streams copied to a temp dir);
    a stored blob as its sha256 and size alone."""
    with tempfile.TemporaryDirectory(prefix="loreg-publish-") as tmp:
        staged = []
        for n, f in enumerate(files):
            if isinstance(f.source, StoredBlob):
                staged.append(_Staged(f.path, None, f.source.size, f.source.sha256))
                continue
            if isinstance(f.source, Path):
                local = f.source
            else:
                local = Path(tmp) / str(n)
                with open(local, "wb") as out:
                    shutil.copyfileobj(f.source, out, HASH_CHUNK)
            size, sha = _hash_file(local)
            staged.append(_Staged(f.path, local, size, sha))
        yield staged


def publish_server_side(
    ctx: Context, principal: Principal, spec: PublishSpec, *, base_url: str = ""
) -> tuple[bool, dict[str, Any]]:
    """Publish files the server already holds, as a trusted caller: ``(created, view)``.

    The entry for code inside the registry that registers content itself: a job's
    result (``workers.runner.publish_output``) and the Hub write side. ``principal``
    is whom the content is published as (:meth:`Principal.for_job` for a job) and
    needs the same scopes an HTTP publish would.

    It runs the three phases of the HTTP publish (``POST /v1/uploads``, blob
    upload, commit) in-process, so the content meets exactly the same checks:
    manifest rules, safetensors headers, the PEFT config against the weights,
    pickle refused anywhere, an adapter's shapes against its registered base
    model. The errors are the HTTP flow's (:class:`registry.errors.RegistryError`
    subclasses; a spec field out of the request schema's bounds is a pydantic
    ``ValidationError``). Blobs the store already holds and the caller may reuse
    are not sent again. A :class:`StoredBlob` file is never read: the caller must
    be allowed to reuse it, or the publish is refused with ``MissingBlob``.

    What an HTTP client cannot set: ``spec.job_id`` (a second publish with the same
    id returns the first one's result, ``created`` False) and ``spec.lineage``
    (edges to parents already resolved to ids, written as given). Identical
    content again returns the existing version with ``created`` False. The view
    is the ``GET /v1/resolve`` body of the version (for a base model, its
    ``GET /v1/base-models/{name}`` body); download URLs in it are built on ``base_url``.
    """
    with _staged(spec.files) as staged:
        req = UploadRequest(
            kind=spec.kind,
            namespace=spec.namespace,
            name=spec.name,
            files=[FileEntry(path=f.path, size=f.size, sha256=f.sha256) for f in staged],
            base_model=spec.base_model,
            description=spec.description,
            metadata=spec.metadata,
            revision=spec.revision,
        )
        with Session(ctx.engine) as session:
            upload = negotiate(
                session, ctx, principal, req, base_url, job_id=spec.job_id, lineage=spec.lineage
            )
            session.commit()
        missing = {b["sha256"] for b in upload["blobs"] if not b["present"]}
        _refuse_unsendable(staged, missing)
        for f in staged:
            if f.sha256 in missing and f.local is not None:
                with open(f.local, "rb") as fileobj:
                    store_received_blob(ctx, upload["upload_id"], f.sha256, f.size, fileobj)
                missing.discard(f.sha256)
        return commit_upload(ctx, principal, upload["upload_id"], base_url)


def _refuse_unsendable(staged: Sequence[_Staged], missing: set[str]) -> None:
    """MissingBlob for stored blobs the caller may not reuse and whose bytes it did not give."""
    have_bytes = {f.sha256 for f in staged if f.local is not None}
    lacking = sorted({f.path for f in staged if f.sha256 in missing - have_bytes})
    if lacking:
        raise MissingBlob(
            f"{len(lacking)} file(s) name content that was never uploaded by you or is not "
            f"readable to you: {', '.join(lacking)}; upload the bytes first",
            details=lacking,
        )
