"""Delete a version or a whole adapter (admin), only when nothing else builds on it.

A version another version or a base model was derived from, directly or through
others (combined, compressed, continued, merged from it), cannot go: the delete
answers 409 ``conflict`` with those dependents in ``details``. Dependents deleted by
the same call (other versions of the adapter being deleted) do not block. Which rows
depend on which is asked in one place, :func:`dependents_of` (the recursive downward
lineage walk, :func:`registry.services.lineage.dependents`).

Everything happens in the caller's transaction, flushed before it returns: the
versions with their files and lineage edges (as child), the aliases on them (each
audited as an ``alias.remove``), the adapter row and any mirror targeting it for an
adapter delete, and a ``blobs.unreferenced_since`` mark on every blob nothing
references any more, from which :func:`registry.services.gc.collect_garbage` counts
its grace period. A publish that links to a version while it is deleted makes the
flush fail on the lineage foreign key: a 409 to retry, nothing half-done.

No cache can serve a deleted version: every resolve runs the lookup statement
first (docs/design.md §14), which finds no row for it, and the cached manifests are
keyed by the row's identity (id, number, digest, creation time), so a later version
reusing an id misses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from loreg.refs import format_ref
from loreg.vocabulary import LineageNodeKind
from registry.auth import Principal, require_scope
from registry.errors import Conflict, NotFound
from registry.models import (
    Adapter,
    Alias,
    BaseModelFile,
    Blob,
    LineageEdge,
    Mirror,
    Namespace,
    Version,
    VersionFile,
    utcnow,
)
from registry.services import audit, catalog, lineage, search_index


def dependents_of(session: Session, version_ids: Sequence[int]) -> list[lineage.Dependent]:
    """Every version or base model derived, directly or not, from one of ``version_ids``,
    except those versions themselves, nearest first (the one place a delete asks)."""
    return lineage.dependents(session, version_ids)


def _hidden_namespaces(
    session: Session, principal: Principal, dependents: list[lineage.Dependent]
) -> set[str]:
    """The private namespaces of version dependents the caller may not read."""
    names = {d.ref.split("/", 1)[0] for d in dependents if d.kind == LineageNodeKind.VERSION}
    if not names:
        return set()
    private = session.exec(
        select(Namespace.name).where(col(Namespace.name).in_(names), col(Namespace.private))
    ).all()
    return {name for name in private if not principal.can(name, "read")}


def _dependent_view(dependent: lineage.Dependent, hidden: set[str]) -> dict[str, Any]:
    """A dependent as the caller may see it (a version in ``hidden``: no ref)."""
    kind = str(dependent.kind)
    if kind == LineageNodeKind.VERSION and dependent.ref.split("/", 1)[0] in hidden:
        return {"kind": kind, "ref": None, "private": True, "depth": dependent.depth}
    return {"kind": kind, "ref": dependent.ref, "private": False, "depth": dependent.depth}


def _refuse_if_depended_on(session: Session, principal: Principal, versions: list[Version]) -> None:
    dependents = dependents_of(session, [v.id for v in versions if v.id is not None])
    if not dependents:
        return
    hidden = _hidden_namespaces(session, principal, dependents)
    views = [_dependent_view(d, hidden) for d in dependents]
    named = ", ".join(v["ref"] or "(a private version)" for v in views[:10])
    more = f" and {len(views) - 10} more" if len(views) > 10 else ""
    raise Conflict(
        f"cannot delete: {len(views)} version(s) or base model(s) were derived from it "
        f"({named}{more}); delete those first, or yank instead of deleting",
        details={"dependents": views},
    )


def _unreferenced(session: Session, shas: set[str]) -> set[str]:
    """Those of ``shas`` no version file or base-model file references any more."""
    if not shas:
        return set()
    used = set(
        session.exec(
            select(VersionFile.blob_sha256).where(col(VersionFile.blob_sha256).in_(shas))
        ).all()
    )
    used |= set(
        session.exec(
            select(BaseModelFile.blob_sha256).where(col(BaseModelFile.blob_sha256).in_(shas))
        ).all()
    )
    return shas - used


def _remove_versions(
    session: Session, principal: Principal, ns: Namespace, adapter: Adapter, versions: list[Version]
) -> dict[str, Any]:
    """Delete the rows of ``versions`` (audited) and mark their orphaned blobs."""
    ids = [v.id for v in versions if v.id is not None]
    refs = {v.id: format_ref(ns.name, adapter.name, version=v.number) for v in versions}
    aliases = session.exec(
        select(Alias).where(col(Alias.version_id).in_(ids)).order_by(col(Alias.name))
    ).all()
    removed_aliases = []
    for alias in aliases:
        session.delete(alias)
        removed_aliases.append(f"{adapter.name}@{alias.name}")
        audit.record(
            session,
            principal,
            "alias.remove",
            namespace=ns.name,
            target=f"{adapter.name}@{alias.name}",
            detail={"before": {"version": refs[alias.version_id]}, "after": None},
        )
    shas = set(
        session.exec(
            select(VersionFile.blob_sha256).where(col(VersionFile.version_id).in_(ids))
        ).all()
    )
    session.flush()
    session.execute(sa.delete(LineageEdge).where(col(LineageEdge.child_version_id).in_(ids)))
    session.execute(sa.delete(VersionFile).where(col(VersionFile.version_id).in_(ids)))
    for version in versions:
        audit.record(
            session,
            principal,
            "version.delete",
            namespace=ns.name,
            target=refs[version.id],
            detail={
                "before": {
                    "digest": version.digest,
                    "size": version.size,
                    "yanked": catalog.yank_view(version),
                },
                "after": None,
            },
        )
        session.delete(version)
    session.flush()
    orphans = _unreferenced(session, shas)
    if orphans:
        session.execute(
            sa.update(Blob).where(col(Blob.sha256).in_(orphans)).values(unreferenced_since=utcnow())
        )
    return {
        "deleted_versions": [refs[v.id] for v in sorted(versions, key=lambda v: v.number)],
        "deleted_aliases": removed_aliases,
        "adapter_deleted": False,
        "unreferenced_blobs": len(orphans),
    }


def _admin_adapter(
    session: Session, principal: Principal, namespace: str, name: str
) -> tuple[Namespace, Adapter]:
    ns, adapter = catalog.get_adapter(session, principal, namespace, name)
    require_scope(principal, ns.name, ns.private, "admin")
    return ns, adapter


def _raced(what: str) -> Conflict:
    """The 409 for a delete whose flush hit a foreign key: linked to meanwhile."""
    return Conflict(
        f"cannot delete {what}: something was linked to it meanwhile (a publish naming it "
        "as a parent); nothing was deleted, check its dependents and retry"
    )


def delete_version(
    session: Session, principal: Principal, namespace: str, name: str, number: int
) -> dict[str, Any]:
    """Delete version ``number`` (admin scope on the namespace); 409 with its dependents."""
    ns, adapter = _admin_adapter(session, principal, namespace, name)
    version = session.exec(
        select(Version).where(Version.adapter_id == adapter.id, Version.number == number)
    ).first()
    if version is None:
        raise NotFound(f"version {number} of '{ns.name}/{adapter.name}' not found")
    _refuse_if_depended_on(session, principal, [version])
    ref = format_ref(ns.name, adapter.name, version=number)
    try:
        result = _remove_versions(session, principal, ns, adapter, [version])
        adapter.updated_at = utcnow()
        session.add(adapter)
        session.flush()
        assert adapter.id is not None  # read from the database
        search_index.refresh_adapter(session, adapter.id)  # removed with its last version
    except sa.exc.IntegrityError as exc:  # the request's session is rolled back
        raise _raced(ref) from exc
    return result


def delete_adapter(
    session: Session, principal: Principal, namespace: str, name: str
) -> dict[str, Any]:
    """Delete an adapter with every version (admin scope); 409 if anything outside it
    depends on one of them. A mirror targeting it is removed too (audited)."""
    ns, adapter = _admin_adapter(session, principal, namespace, name)
    versions = list(session.exec(select(Version).where(Version.adapter_id == adapter.id)).all())
    _refuse_if_depended_on(session, principal, versions)
    try:
        result = _remove_adapter(session, principal, ns, adapter, versions)
    except sa.exc.IntegrityError as exc:  # the request's session is rolled back
        raise _raced(f"'{ns.name}/{adapter.name}'") from exc
    return {**result, "adapter_deleted": True}


def _remove_adapter(
    session: Session, principal: Principal, ns: Namespace, adapter: Adapter, versions: list[Version]
) -> dict[str, Any]:
    result = _remove_versions(session, principal, ns, adapter, versions)
    rest = session.exec(select(Alias).where(Alias.adapter_id == adapter.id)).all()
    for alias in rest:  # every alias is on one of its versions; none should be left
        session.delete(alias)
    for mirror in session.exec(
        select(Mirror).where(Mirror.namespace == ns.name, Mirror.name == adapter.name)
    ).all():
        session.delete(mirror)
        audit.record(
            session,
            principal,
            "mirror.remove",
            namespace=ns.name,
            target=f"{ns.name}/{adapter.name}",
            detail={"before": {"id": mirror.id, "repo": mirror.repo_id}, "after": None},
        )
    session.flush()
    assert adapter.id is not None  # read from the database
    search_index.remove_adapter(session, adapter.id)
    session.delete(adapter)
    audit.record(
        session,
        principal,
        "adapter.delete",
        namespace=ns.name,
        target=f"{ns.name}/{adapter.name}",
        detail={"before": {"versions": result["deleted_versions"]}, "after": None},
    )
    session.flush()
    return result
