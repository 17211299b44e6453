"""Which version last changed each file and folder of a revision (the Hub's ``lastCommit``).

Asked for with ``expand=true`` on tree and paths-info listings. A version "changes" a
path when the path is added, removed or gets other bytes compared with the version
before it; a folder changes with anything under it.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from registry.models import Version, VersionFile
from registry.services.hub.revisions import HubRevision


def _folders_of(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def last_changes(session: Session, rev: HubRevision) -> dict[str, Version]:
    """For every file and folder path up to the revision, the newest version that changed it."""
    versions = session.exec(
        select(Version)
        .where(Version.adapter_id == rev.adapter.id, Version.number <= rev.version.number)
        .order_by(col(Version.number))
    ).all()
    rows = session.exec(
        select(VersionFile.version_id, VersionFile.path, VersionFile.blob_sha256)
        .join(Version, col(Version.id) == VersionFile.version_id)
        .where(Version.adapter_id == rev.adapter.id, Version.number <= rev.version.number)
    ).all()
    contents: dict[int | None, dict[str, str]] = {}
    for version_id, path, sha256 in rows:
        contents.setdefault(version_id, {})[path] = sha256
    last: dict[str, Version] = {}
    previous: dict[str, str] = {}
    for version in versions:
        current = contents.get(version.id, {})
        for path in current.keys() | previous.keys():
            if current.get(path) != previous.get(path):
                last[path] = version
                last.update(dict.fromkeys(_folders_of(path), version))
        previous = current
    return last
