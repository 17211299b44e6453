"""The ``Warning`` headers of a resolve: the version is yanked, its adapter deprecated.

Both facts are mutable, so they come from the row the resolve statement reads on
every request (:mod:`registry.services.resolve`), never from a cache; the answer
body is the same bytes with or without them. The header format is
:mod:`loreg.notices`, shared with the SDK that parses it.
"""

from __future__ import annotations

from datetime import datetime

from loreg import notices
from loreg.refs import format_ref
from registry.models import Adapter, Namespace, Version


def header_values(
    namespace: str,
    name: str,
    number: int,
    yanked_at: datetime | None,
    yank_reason: str | None,
    deprecated_message: str | None,
    deprecated_successor: str | None,
) -> tuple[str, ...]:
    """The ``Warning`` header values for version ``number`` of ``namespace/name`` (none
    for a version that is neither yanked nor of a deprecated adapter)."""
    out: list[str] = []
    if yanked_at is not None:
        ref = format_ref(namespace, name, version=number)
        out.append(notices.yanked(ref, yank_reason).header_value())
    if deprecated_message is not None:
        adapter = f"{namespace}/{name}"
        notice = notices.deprecated(adapter, deprecated_message, deprecated_successor)
        out.append(notice.header_value())
    return tuple(out)


def of_rows(ns: Namespace, adapter: Adapter, version: Version) -> tuple[str, ...]:
    """:func:`header_values` of rows read by the general path."""
    return header_values(
        ns.name,
        adapter.name,
        version.number,
        version.yanked_at,
        version.yank_reason,
        adapter.deprecated_message,
        adapter.deprecated_successor,
    )
