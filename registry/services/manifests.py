"""A version's manifest: the immutable part of its resolve answer, and the answer itself.

A version never changes once committed: its files, config, digest, base model, card
fields and lineage edges are written by publish and only read afterwards. They are
the :class:`Manifest`. What can change is kept out of it and passed in when the answer
is rendered: the aliases pointing at the version, the caller (who decides which
private lineage parents are named) and the short-lived download URLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from loreg.refs import format_ref
from registry.auth import Principal
from registry.models import Adapter, Namespace, Version, VersionFile
from registry.services import lineage
from registry.services.context import Context
from registry.services.repair import render
from registry.services.urls import blob_download_url


@dataclass(frozen=True)
class FileEntry:
    """One file of a version."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Everything of a version's resolve answer that never changes after commit."""

    version_id: int
    ref: str
    namespace: str
    name: str
    number: int
    digest: str
    files: tuple[FileEntry, ...]
    config: Any
    base_model: str | None
    base_model_registered: bool
    description: str | None
    metadata: dict[str, Any]
    lineage: tuple[lineage.ParentFacts, ...]
    summary: dict[str, Any]
    size: int
    created_at: str
    created_by: str | None

    @property
    def private_parents(self) -> tuple[str | None, ...]:
        """The namespaces of the lineage parents in private namespaces, in edge order."""
        return tuple(f.parent.namespace for f in self.lineage if f.parent.private)


def load_manifest(session: Session, ns: Namespace, adapter: Adapter, version: Version) -> Manifest:
    """Read a version's manifest (its files, in path order, and its lineage parents)."""
    assert version.id is not None  # a row read from the database
    files = session.exec(
        select(VersionFile)
        .where(VersionFile.version_id == version.id)
        .order_by(col(VersionFile.path))
    ).all()
    return Manifest(
        version_id=version.id,
        ref=format_ref(ns.name, adapter.name, version=version.number),
        namespace=ns.name,
        name=adapter.name,
        number=version.number,
        digest=version.digest,
        files=tuple(FileEntry(f.path, f.size, f.blob_sha256) for f in files),
        config=render(version.config),
        base_model=version.base_model,
        base_model_registered=version.base_model_id is not None,
        description=version.description,
        metadata=render(version.meta) or {},
        lineage=tuple(lineage.parent_facts(session, lineage.node_of(version))),
        summary=render(version.summary) or {},
        size=version.size,
        created_at=version.created_at.isoformat(),
        created_by=version.created_by,
    )


def resolve_view(
    ctx: Context,
    manifest: Manifest,
    aliases: list[str],
    principal: Principal | None,
    base_url: str,
) -> dict[str, Any]:
    """The resolve object of a version (docs/http-api.md), with fresh download URLs.

    ``aliases`` are the alias names on the version, sorted; ``principal`` decides which
    private lineage parents are named (none when None).
    """
    return {
        "ref": manifest.ref,
        "namespace": manifest.namespace,
        "name": manifest.name,
        "version": manifest.number,
        "digest": manifest.digest,
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "url": blob_download_url(ctx, base_url, f.sha256, f.path.rsplit("/", 1)[-1]),
            }
            for f in manifest.files
        ],
        "config": manifest.config,
        "base_model": manifest.base_model,
        "base_model_registered": manifest.base_model_registered,
        "aliases": aliases,
        "description": manifest.description,
        "metadata": manifest.metadata,
        "lineage": lineage.parents_view(list(manifest.lineage), principal),
        "summary": manifest.summary,
        "size": manifest.size,
        "created_at": manifest.created_at,
        "created_by": manifest.created_by,
    }
