"""A Hub commit published as a loreg version, through the same publish service as ``loreg push``.

A Hub commit is a delta on its revision's tree: the new version starts from the
files of the current newest version (none for a repo with no version yet), drops
the deleted paths and takes the added ones. Files carried over are named by
sha256 and size (:class:`registry.services.publish.StoredBlob`), never read again.
The result goes through :func:`registry.services.publish.publish_server_side` as
the caller, so every check of a push applies (paths, pickle refused, safetensors
and PEFT config validated, the shapes against a registered base model), and the
same content again creates nothing: the commit answers the existing version.

Each commit is one version, so a client that splits an upload into several
commits (``upload_large_folder``, or a folder over the pipeline's 100 MiB of
regular content per commit) publishes several versions, each of which must be a
complete adapter on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from loreg.vocabulary import ArtifactKind
from registry.auth import Principal
from registry.errors import InvalidManifest, MissingBlob
from registry.models import Blob, VersionFile
from registry.services.context import Context
from registry.services.hub.access import check_commit_revision, writable_repo
from registry.services.hub.errors import EntryNotFound, ParentCommitMismatch
from registry.services.hub.ndjson import AddFile, AddStoredFile, CommitHeader, CommitOp, DeletePath
from registry.services.hub.revisions import COMMIT_ID_LENGTH, commit_id, latest_version
from registry.services.publish import PublishFile, PublishSpec, StoredBlob, publish_server_side
from registry.services.publish.checks import ADAPTER_CONFIG
from registry.validation.paths import validate_file_path

#: Longest commit summary kept in the version's metadata (``hub_commit``).
MAX_SUMMARY = 1000
MAX_DESCRIPTION = 4096


@dataclass(frozen=True)
class Parent:
    """What a commit builds on: the newest version's files and fields (none for an empty repo)."""

    commit: str | None
    files: dict[str, StoredBlob]
    base_model: str | None
    metadata: dict[str, Any]


def _parent(session: Session, principal: Principal, namespace: str, name: str) -> Parent:
    """The writable repo's newest version as a :class:`Parent`."""
    _, adapter = writable_repo(session, principal, namespace, name)
    version = latest_version(session, adapter)
    if version is None:
        return Parent(None, {}, None, {})
    rows = session.exec(select(VersionFile).where(VersionFile.version_id == version.id)).all()
    meta = {k: v for k, v in (version.meta or {}).items() if k != "hub_commit"}
    return Parent(
        commit_id(version),
        {f.path: StoredBlob(f.blob_sha256, f.size) for f in rows},
        version.base_model,
        meta,
    )


def _stored_size(session: Session, sha256: str, path: str) -> int:
    """The size of a stored blob an ``lfsFile`` line names without one (a copy)."""
    blob = session.get(Blob, sha256)
    if blob is None:
        raise MissingBlob(
            f"'{path}' names blob {sha256}, which was never uploaded: send it through "
            "the LFS batch API first"
        )
    return blob.size


def apply_delta(
    session: Session, parent: Parent, ops: Sequence[CommitOp]
) -> tuple[dict[str, PublishFile], CommitHeader]:
    """The new tree: the parent's files, then each deletion and addition in order."""
    header = ops[0]
    assert isinstance(header, CommitHeader), "the parser puts the header first"
    tree: dict[str, PublishFile] = {
        path: PublishFile(path, blob) for path, blob in parent.files.items()
    }
    for op in ops[1:]:
        if isinstance(op, DeletePath):
            path = op.path.strip("/")
            if op.folder:
                gone = [p for p in tree if p.startswith(f"{path}/") or not path]
            else:
                gone = [path] if path in tree else []
            if not gone:
                raise EntryNotFound(
                    f"cannot delete '{op.path}': no such {'folder' if op.folder else 'file'} "
                    f"at commit {parent.commit or '(empty repo)'}",
                    commit=parent.commit,
                )
            for p in gone:
                del tree[p]
        elif isinstance(op, AddFile):
            path = validate_file_path(op.path)
            tree[path] = PublishFile(path, op.local)
        elif isinstance(op, AddStoredFile):
            path = validate_file_path(op.path)
            size = op.size if op.size is not None else _stored_size(session, op.sha256, path)
            tree[path] = PublishFile(path, StoredBlob(op.sha256, size))
    return tree, header


def _check_parent(header: CommitHeader, parent: Parent) -> None:
    wanted = header.parent_commit
    if wanted is None or wanted == parent.commit:
        return
    raise ParentCommitMismatch(
        f"parentCommit {wanted} is not the head of main (now {parent.commit or 'no commit yet'}): "
        "someone committed since; fetch the repo again and retry"
    )


def _spec(
    namespace: str, name: str, tree: dict[str, PublishFile], header: CommitHeader, parent: Parent
) -> PublishSpec:
    """The publish spec of the new tree.

    The parent's metadata is carried over; its base model too while the adapter's
    config is the parent's (a new config names its own base model).
    """
    metadata = dict(parent.metadata)
    if header.summary:
        metadata["hub_commit"] = header.summary[:MAX_SUMMARY]
    config = tree.get(ADAPTER_CONFIG)
    same_config = config is not None and config.source == parent.files.get(ADAPTER_CONFIG)
    return PublishSpec(
        kind=ArtifactKind.ADAPTER,
        namespace=namespace,
        name=name,
        files=[tree[p] for p in sorted(tree)],
        base_model=parent.base_model if same_config else None,
        description=header.description[:MAX_DESCRIPTION] or None,
        metadata=metadata,
    )


def commit(
    ctx: Context,
    principal: Principal,
    namespace: str,
    name: str,
    revision: str,
    ops: Sequence[CommitOp],
    base_url: str,
) -> tuple[bool, str]:
    """Publish a parsed commit on ``main``: ``(created, commit id)``.

    Refusals are the publish's errors (nothing is written); a ``parentCommit`` that
    is not the head answers 412.
    """
    check_commit_revision(revision)
    with Session(ctx.engine) as session:
        parent = _parent(session, principal, namespace, name)
        tree, header = apply_delta(session, parent, ops)
    _check_parent(header, parent)
    if not tree:
        raise InvalidManifest(
            "the commit leaves the repo empty; an adapter needs adapter_config.json and "
            "adapter_model.safetensors"
        )
    if len(tree) > ctx.settings.max_files_per_version:
        raise InvalidManifest(
            f"the commit leaves {len(tree)} files; at most {ctx.settings.max_files_per_version}"
        )
    spec = _spec(namespace, name, tree, header, parent)
    created, view = publish_server_side(ctx, principal, spec, base_url=base_url)
    return created, view["digest"].removeprefix("sha256:")[:COMMIT_ID_LENGTH]
