"""The catalog's lists: namespaces, adapters, an adapter's versions, one page at a time.

Every list is a keyset page (:mod:`registry.services.pagination`) read through an
index, and what a page shows is gathered with a fixed number of queries whatever
the page holds: the adapters of a page get their version count, latest version and
aliases from one grouped query and one join over the page's ids, never a query per
adapter. Private namespaces are filtered in SQL, so a page is always full.

Orders (the last key unique, so a page starts strictly after the previous one):

* adapters ``sort=name`` (the default): ``(namespace_id, name)``, i.e. grouped by
  namespace (in the order namespaces were created), by name within one; the
  ``(namespace_id, name)`` unique index serves it with or without a namespace.
* adapters ``sort=updated``: ``(updated_at, id)`` newest first (the
  ``ix_adapters_*updated_at_id`` indexes). An adapter published to while a client
  pages moves ahead of its cursor: it is not listed twice, and one not listed yet is
  found by starting again.
* versions: ``number`` newest first (the ``(adapter_id, number)`` unique index).
* namespaces: ``name`` (unique index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, func, select

from loreg.vocabulary import AdapterSort, CardStatus
from registry.auth import ALL_NAMESPACES, Principal
from registry.models import Adapter, Alias, Namespace, Version, VersionFile
from registry.services.card_status import card_statuses
from registry.services.catalog import (
    checked_name,
    deprecation_view,
    get_adapter,
    visible_namespace,
    yank_view,
)
from registry.services.pagination import Page, PageRequest, SortKey, paginate

#: How many of the newest versions the adapter detail carries (the rest: the
#: versions list, from the detail's ``recent_versions.next_cursor``).
DETAIL_VERSIONS = 20

_ADAPTER_ORDERS: dict[AdapterSort, tuple[SortKey, ...]] = {
    AdapterSort.NAME: (SortKey(col(Adapter.namespace_id)), SortKey(col(Adapter.name))),
    AdapterSort.UPDATED: (
        SortKey(col(Adapter.updated_at), descending=True),
        SortKey(col(Adapter.id), descending=True),
    ),
}
_VERSION_ORDER = (SortKey(col(Version.number), descending=True),)
_NAMESPACE_ORDER = (SortKey(col(Namespace.name)),)


def visible_namespaces(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on :class:`Namespace`: the namespaces ``principal`` may read."""
    if principal.can(ALL_NAMESPACES, "read"):
        return sa.true()
    readable = sorted(ns for ns in principal.grants if principal.can(ns, "read"))
    public = col(Namespace.private).is_(False)
    return sa.or_(public, col(Namespace.name).in_(readable)) if readable else public


def list_namespaces(session: Session, principal: Principal, page: PageRequest) -> Page[Any]:
    """A page of the namespaces the caller may see, by name."""
    statement = select(Namespace).where(visible_namespaces(principal))
    return paginate(
        session,
        statement,
        _NAMESPACE_ORDER,
        page,
        scope="namespaces",
        key_of=lambda ns: (ns.name,),
        render=lambda ns: {
            "name": ns.name,
            "private": ns.private,
            "created_at": ns.created_at.isoformat(),
        },
    )


def list_adapters(
    session: Session,
    principal: Principal,
    page: PageRequest,
    namespace: str | None = None,
    sort: AdapterSort = AdapterSort.NAME,
) -> Page[Any]:
    """A page of the adapters visible to the caller, optionally of one namespace.

    Four queries at most: the namespace (with a filter), the page, and the version
    counts and aliases of the page's adapters.
    """
    statement = select(Adapter, Namespace.name).join(
        Namespace, col(Namespace.id) == Adapter.namespace_id
    )
    if namespace is not None:
        ns = visible_namespace(session, principal, checked_name(namespace, "namespace"))
        statement = statement.where(Adapter.namespace_id == ns.id)
    else:
        statement = statement.where(visible_namespaces(principal))
    keys = _ADAPTER_ORDERS[sort]
    found = paginate(
        session,
        statement,
        keys,
        page,
        scope=f"adapters|sort={sort}|ns={namespace or '*'}",
        key_of=lambda row: tuple(getattr(row[0], k.column.key) for k in keys),
        render=lambda row: (row[0], row[1]),
    )
    return Page(adapter_summaries(session, found.items), found.next_cursor)


def adapter_summaries(
    session: Session, rows: Sequence[tuple[Adapter, str]]
) -> list[dict[str, Any]]:
    """The summary (``AdapterSummary``) of each ``(adapter, namespace name)``, in order.

    Two queries for any number of adapters: one grouped over their versions (count
    and highest number not yanked, from the ``(adapter_id, number)`` index), one for
    their aliases.
    """
    ids = [adapter.id for adapter, _ in rows]
    if not ids:
        return []
    unyanked = sa.case((col(Version.yanked_at).is_(None), Version.number))
    counts = {
        adapter_id: (count, latest)
        for adapter_id, count, latest in session.exec(
            select(Version.adapter_id, func.count(col(Version.id)), func.max(unyanked))
            .where(col(Version.adapter_id).in_(ids))
            .group_by(col(Version.adapter_id))
        ).all()
    }
    aliases: dict[int, dict[str, int]] = {}
    for adapter_id, alias, number in session.exec(
        select(Alias.adapter_id, Alias.name, Version.number)
        .join(Version, col(Version.id) == Alias.version_id)
        .where(col(Alias.adapter_id).in_(ids))
        .order_by(col(Alias.adapter_id), col(Alias.name))
    ).all():
        aliases.setdefault(adapter_id, {})[alias] = number
    out = []
    for adapter, namespace in rows:
        assert adapter.id is not None  # read from the database
        count, latest = counts.get(adapter.id, (0, None))
        out.append(
            {
                "namespace": namespace,
                "name": adapter.name,
                "description": adapter.description,
                "base_model": adapter.base_model,
                "latest_version": latest,
                "versions": count,
                "aliases": aliases.get(adapter.id, {}),
                "updated_at": adapter.updated_at.isoformat(),
                "deprecation": deprecation_view(adapter),
            }
        )
    return out


def _versions_page(session: Session, adapter: Adapter, page: PageRequest) -> Page[Any]:
    """A page of ``adapter``'s versions, newest first, with their file counts and card
    statuses (one grouped query each)."""
    found = paginate(
        session,
        select(Version).where(Version.adapter_id == adapter.id),
        _VERSION_ORDER,
        page,
        # the adapter's id, not its name: a cursor never continues another adapter's list
        scope=f"versions|adapter={adapter.id}",
        key_of=lambda v: (v.number,),
        render=lambda v: v,
    )
    ids = [v.id for v in found.items]
    files: dict[int, int] = {}
    if ids:
        files = dict(
            session.exec(
                select(VersionFile.version_id, func.count(col(VersionFile.id)))
                .where(col(VersionFile.version_id).in_(ids))
                .group_by(col(VersionFile.version_id))
            ).all()
        )
    cards = card_statuses(session, [v.id for v in found.items if v.id is not None])
    items = [
        {
            "version": v.number,
            "digest": v.digest,
            "size": v.size,
            "file_count": files.get(v.id, 0),
            "created_at": v.created_at.isoformat(),
            "created_by": v.created_by,
            "base_model": v.base_model,
            "yanked": yank_view(v),
            "card_status": cards.get(v.id or 0, CardStatus.PENDING),
        }
        for v in found.items
    ]
    return Page(items, found.next_cursor)


def list_versions(
    session: Session, principal: Principal, namespace: str, name: str, page: PageRequest
) -> Page[Any]:
    """A page of the versions of ``namespace/name``, newest first (404 if not visible)."""
    _, adapter = get_adapter(session, principal, namespace, name)
    return _versions_page(session, adapter, page)


def adapter_detail(
    session: Session, principal: Principal, namespace: str, name: str, secret: str
) -> dict[str, Any]:
    """One adapter: its summary plus its newest :data:`DETAIL_VERSIONS` versions.

    ``recent_versions.next_cursor`` continues on ``GET .../versions`` (same order,
    same cursor scope); ``secret`` signs it.
    """
    ns, adapter = get_adapter(session, principal, namespace, name)
    (summary,) = adapter_summaries(session, [(adapter, ns.name)])
    first = PageRequest(limit=DETAIL_VERSIONS, secret=secret)
    return {**summary, "recent_versions": _versions_page(session, adapter, first).as_dict()}
