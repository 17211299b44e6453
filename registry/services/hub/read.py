"""Answers of the Hub read calls: repo info, tree, paths-info, refs, commits, file lookup.

Every file is presented as a Git LFS object (its sha256 is the LFS oid and the
``ETag``), whatever its size: the client then names its cache blob by the sha256 and
never needs a git blob hash, which loreg does not keep. The ``oid`` of a tree entry
is the git blob hash of the file's LFS pointer, as on the Hub.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from registry.auth import Principal
from registry.models import Alias, BlobFault, Version, VersionFile
from registry.services import fsck
from registry.services.hub import history
from registry.services.hub.errors import EntryNotFound
from registry.services.hub.revisions import (
    MAIN,
    HubRevision,
    commit_id,
    find_version,
    get_repo,
    latest_version,
    resolve_revision,
)

#: Most commits in one page of ``list_repo_commits`` (the client follows ``Link``).
COMMITS_PAGE_SIZE = 100


def hub_time(moment: datetime) -> str:
    """A timestamp in the Hub's form (ISO 8601, UTC, milliseconds, ``Z``).

    Postgres hands timestamps back in the session's time zone (whatever the server's
    ``TimeZone`` is), SQLite as naive UTC: an aware one is converted to UTC first.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file of an object."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    ).encode()


def git_blob_id(data: bytes) -> str:
    """The git blob hash (sha1 of ``blob <size>\\0`` + data)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class HubFile:
    """One file of a version as the Hub describes it."""

    path: str
    size: int
    sha256: str

    @property
    def pointer_size(self) -> int:
        """Size of the file's LFS pointer."""
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def blob_id(self) -> str:
        """The git blob hash of the LFS pointer (the tree entry's ``oid``)."""
        return git_blob_id(lfs_pointer(self.sha256, self.size))

    def tree_entry(self) -> dict[str, Any]:
        """The ``tree`` / ``paths-info`` item of this file."""
        return {
            "type": "file",
            "path": self.path,
            "size": self.size,
            "oid": self.blob_id,
            "lfs": {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size},
        }

    def sibling(self) -> dict[str, Any]:
        """The ``siblings`` item of repo info (note: ``lfs.sha256`` here, ``lfs.oid`` in trees)."""
        return {
            "rfilename": self.path,
            "size": self.size,
            "blobId": self.blob_id,
            "lfs": {"sha256": self.sha256, "size": self.size, "pointerSize": self.pointer_size},
        }


def version_files(session: Session, version: Version) -> list[HubFile]:
    """The files of a version, sorted by path."""
    rows = session.exec(
        select(VersionFile)
        .where(VersionFile.version_id == version.id)
        .order_by(col(VersionFile.path))
    ).all()
    return [HubFile(f.path, f.size, f.blob_sha256) for f in rows]


def _folders(files: list[HubFile]) -> set[str]:
    out: set[str] = set()
    for f in files:
        parts = f.path.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


def _folder_entry(revision: HubRevision, path: str) -> dict[str, Any]:
    oid = hashlib.sha1(f"{revision.commit}:{path}".encode(), usedforsecurity=False).hexdigest()
    return {"type": "directory", "path": path, "oid": oid}


def _card_data(version: Version | None) -> dict[str, Any]:
    card: dict[str, Any] = {"library_name": "peft"}
    if version is None:
        return card
    if version.base_model:
        card["base_model"] = version.base_model
    tags = (version.meta or {}).get("tags")
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        card["tags"] = tags
    return card


def repo_info(
    session: Session, principal: Principal, namespace: str, name: str, revision: str | None
) -> dict[str, Any]:
    """``GET /api/models/{repo}[/revision/{rev}]``: the Hub's model info for a version.

    Without a revision it describes ``main``; a repo with no version yet has ``sha`` null.
    """
    ns, adapter = get_repo(session, principal, namespace, name)
    if revision is None:
        version = latest_version(session, adapter)
    else:
        version = find_version(session, adapter, revision)
    files = [] if version is None else version_files(session, version)
    card = _card_data(version)
    tags = ["peft", "lora", *card.get("tags", [])]
    if version is not None and version.base_model:
        tags.append(f"base_model:adapter:{version.base_model}")
    info: dict[str, Any] = {
        "_id": f"loreg-{adapter.id}",
        "id": f"{ns.name}/{adapter.name}",
        "modelId": f"{ns.name}/{adapter.name}",
        "author": ns.name,
        "sha": None if version is None else commit_id(version),
        "private": ns.private,
        "gated": False,
        "disabled": False,
        "library_name": "peft",
        "tags": tags,
        "createdAt": hub_time(adapter.created_at),
        "lastModified": hub_time(version.created_at if version else adapter.updated_at),
        "cardData": card,
        "siblings": [f.sibling() for f in files],
        "usedStorage": sum(f.size for f in files),
    }
    if version is not None and version.description:
        info["description"] = version.description
    return info


def tree(
    session: Session,
    principal: Principal,
    namespace: str,
    name: str,
    revision: str,
    path: str,
    recursive: bool,
    expand: bool = False,
) -> list[dict[str, Any]]:
    """``GET /api/models/{repo}/tree/{rev}[/{path}]``: the entries under a folder.

    ``expand`` adds each entry's ``lastCommit`` (the version that last changed it).
    """
    rev = resolve_revision(session, principal, namespace, name, revision)
    files = version_files(session, rev.version)
    folders = _folders(files)
    base = path.strip("/")
    if base and base not in folders:
        raise EntryNotFound(
            f"folder '{base}' not found in {rev.repo_id} at {revision}", commit=rev.commit
        )
    prefix = f"{base}/" if base else ""

    def wanted(p: str) -> bool:
        return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

    entries = [_folder_entry(rev, d) for d in sorted(folders) if wanted(d)]
    entries += [f.tree_entry() for f in files if wanted(f.path)]
    return _with_last_commits(session, rev, entries) if expand else entries


def _with_last_commits(
    session: Session, rev: HubRevision, entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``entries`` with the ``lastCommit`` ``{id, title, date}`` that last changed each."""
    last = history.last_changes(session, rev)
    for entry in entries:
        version = last.get(entry["path"], rev.version)
        entry["lastCommit"] = {
            "id": commit_id(version),
            "title": f"v{version.number}",
            "date": hub_time(version.created_at),
        }
    return entries


def paths_info(
    session: Session,
    principal: Principal,
    namespace: str,
    name: str,
    revision: str,
    paths: list[str],
    expand: bool = False,
) -> list[dict[str, Any]]:
    """``POST /api/models/{repo}/paths-info/{rev}``: entries of the named paths that exist.

    ``expand`` adds each entry's ``lastCommit``, as :func:`tree` does.
    """
    rev = resolve_revision(session, principal, namespace, name, revision)
    files = {f.path: f for f in version_files(session, rev.version)}
    folders = _folders(list(files.values()))
    out: list[dict[str, Any]] = []
    for p in dict.fromkeys(raw.strip("/") for raw in paths):  # "docs/" is "docs": once
        if p in files:
            out.append(files[p].tree_entry())
        elif p in folders:
            out.append(_folder_entry(rev, p))
    return _with_last_commits(session, rev, out) if expand else out


def _ref(name: str, kind: str, version: Version) -> dict[str, Any]:
    return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": commit_id(version)}


def refs(
    session: Session, principal: Principal, namespace: str, name: str, *, with_prs: bool = False
) -> dict[str, Any]:
    """``GET /api/models/{repo}/refs``: ``main`` and aliases as branches, ``vN`` as tags.

    ``with_prs`` (``?include_prs=1``) adds the ``pullRequests`` list the client then
    reads; loreg has no pull requests, so it is empty.
    """
    _, adapter = get_repo(session, principal, namespace, name)
    versions = session.exec(
        select(Version).where(Version.adapter_id == adapter.id).order_by(col(Version.number))
    ).all()
    by_id = {v.id: v for v in versions}
    main = latest_version(session, adapter)  # the newest not yanked
    branches = [_ref(MAIN, "heads", main)] if main is not None else []
    aliases = session.exec(
        select(Alias).where(Alias.adapter_id == adapter.id).order_by(col(Alias.name))
    ).all()
    branches += [_ref(a.name, "heads", by_id[a.version_id]) for a in aliases if a.name != MAIN]
    tags = [_ref(f"v{v.number}", "tags", v) for v in reversed(versions)]
    out: dict[str, Any] = {"branches": branches, "converts": [], "tags": tags}
    if with_prs:
        out["pullRequests"] = []
    return out


def commits(
    session: Session,
    principal: Principal,
    namespace: str,
    name: str,
    revision: str,
    page: int,
) -> tuple[list[dict[str, Any]], bool]:
    """``GET /api/models/{repo}/commits/{rev}``: the revision's version and every older one.

    Newest first, :data:`COMMITS_PAGE_SIZE` per page; returns the page and whether
    another follows.
    """
    rev = resolve_revision(session, principal, namespace, name, revision)
    rows = session.exec(
        select(Version)
        .where(Version.adapter_id == rev.adapter.id, Version.number <= rev.version.number)
        .order_by(col(Version.number).desc())
        .offset(page * COMMITS_PAGE_SIZE)
        .limit(COMMITS_PAGE_SIZE + 1)
    ).all()
    items = [_commit(rev, v) for v in rows[:COMMITS_PAGE_SIZE]]
    return items, len(rows) > COMMITS_PAGE_SIZE


def _commit(rev: HubRevision, version: Version) -> dict[str, Any]:
    ref = f"{rev.repo_id}:v{version.number}"
    message = f"loreg {ref} {version.digest}"
    if version.description:
        message += f"\n\n{version.description}"
    return {
        "id": commit_id(version),
        "title": f"v{version.number}",
        "message": message,
        "date": hub_time(version.created_at),
        "authors": [{"user": version.created_by or "loreg"}],
    }


def file_at(
    session: Session, principal: Principal, namespace: str, name: str, revision: str, path: str
) -> tuple[HubRevision, HubFile]:
    """The file ``path`` of the revision, for ``HEAD``/``GET .../resolve/{rev}/{path}``.

    EntryNotFound (with the commit id) when the version has no such file; 409
    ``files_missing`` when fsck found its bytes gone from the store.
    """
    rev = resolve_revision(session, principal, namespace, name, revision)
    row = session.exec(
        select(VersionFile, BlobFault.problem)
        .outerjoin(BlobFault, col(BlobFault.sha256) == VersionFile.blob_sha256)
        .where(VersionFile.version_id == rev.version.id, VersionFile.path == path)
    ).first()
    if row is None:
        raise EntryNotFound(
            f"'{path}' not found in {rev.repo_id} at {revision} (commit {rev.commit})",
            commit=rev.commit,
        )
    f, problem = row
    fsck.check_files_present(f"{rev.repo_id}:v{rev.version.number}", [(f.path, problem)])
    return rev, HubFile(f.path, f.size, f.blob_sha256)
