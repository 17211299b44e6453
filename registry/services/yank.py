"""Yank and unyank a version (write scope; audited with before and after).

A yanked version stays: its files, digest, aliases and lineage are untouched and an
exact ref (number, digest, or an alias still on it) pulls it, with a ``Warning``
header. Only the selectors that mean "the newest" skip it: a bare ref (latest,
:func:`registry.services.catalog.find_version` and the resolve statement) and the
Hub protocol's ``main`` (:mod:`registry.services.hub.revisions`).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, func, select

from loreg.refs import format_ref
from registry.auth import Principal, require_scope
from registry.errors import NotFound
from registry.models import Adapter, Namespace, Version, utcnow
from registry.services import audit, catalog, search_index


def writable_version(
    session: Session, principal: Principal, namespace: str, name: str, number: int, scope: str
) -> tuple[Namespace, Adapter, Version]:
    """Version ``number`` of ``namespace/name`` if the caller holds ``scope`` there, else
    404/401/403."""
    ns, adapter = catalog.get_adapter(session, principal, namespace, name)
    require_scope(principal, ns.name, ns.private, scope)
    version = session.exec(
        select(Version).where(Version.adapter_id == adapter.id, Version.number == number)
    ).first()
    if version is None:
        raise NotFound(f"version {number} of '{ns.name}/{adapter.name}' not found")
    return ns, adapter, version


def latest_unyanked(session: Session, adapter: Adapter) -> int | None:
    """The number a bare ref of ``adapter`` selects now (None when every version is yanked)."""
    return session.exec(
        select(func.max(Version.number)).where(
            Version.adapter_id == adapter.id,
            Version.yanked_at == None,  # noqa: E711
        )
    ).one()


def _result(session: Session, ns: Namespace, adapter: Adapter, version: Version) -> dict[str, Any]:
    return {
        "ref": format_ref(ns.name, adapter.name, version=version.number),
        "yanked": catalog.yank_view(version),
        "latest_version": latest_unyanked(session, adapter),
    }


def _record(
    session: Session,
    principal: Principal,
    action: str,
    ns: Namespace,
    adapter: Adapter,
    version: Version,
    before: dict[str, Any] | None,
) -> None:
    audit.record(
        session,
        principal,
        action,
        namespace=ns.name,
        target=format_ref(ns.name, adapter.name, version=version.number),
        detail={"before": before, "after": catalog.yank_view(version)},
    )


def yank(
    session: Session,
    principal: Principal,
    namespace: str,
    name: str,
    number: int,
    reason: str | None,
) -> dict[str, Any]:
    """Yank a version (again: a new reason replaces the old one); audited."""
    ns, adapter, version = writable_version(session, principal, namespace, name, number, "write")
    before = catalog.yank_view(version)
    version.yanked_at = version.yanked_at or utcnow()
    version.yanked_by = principal.name
    version.yank_reason = reason
    session.add(version)
    session.flush()
    _record(session, principal, "version.yank", ns, adapter, version, before)
    assert adapter.id is not None  # read from the database
    search_index.refresh_adapter(session, adapter.id)  # the current version may change
    return _result(session, ns, adapter, version)


def unyank(
    session: Session, principal: Principal, namespace: str, name: str, number: int
) -> dict[str, Any]:
    """Unyank a version (nothing to do, and nothing audited, if it is not yanked)."""
    ns, adapter, version = writable_version(session, principal, namespace, name, number, "write")
    before = catalog.yank_view(version)
    if before is not None:
        version.yanked_at = version.yanked_by = version.yank_reason = None
        session.add(version)
        session.flush()
        _record(session, principal, "version.unyank", ns, adapter, version, before)
        assert adapter.id is not None  # read from the database
        search_index.refresh_adapter(session, adapter.id)
    return _result(session, ns, adapter, version)
