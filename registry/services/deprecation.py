"""Deprecate an adapter: a message and an optional successor ref (write scope; audited).

While set, the adapter's views show it and every resolve of one of its versions
carries a ``Warning`` header (:mod:`registry.services.version_notices`). The
successor is checked when it is set: a valid ref to an adapter (and version, if it
names one) the caller can read, other than the adapter itself, and not in another
private namespace (the warning shows its name to every reader of the adapter).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from registry.auth import Principal, require_scope
from registry.errors import InvalidRef, InvalidRequest, NotFound
from registry.models import Adapter, Namespace, utcnow
from registry.services import audit, catalog


def _writable(
    session: Session, principal: Principal, namespace: str, name: str
) -> tuple[Namespace, Adapter]:
    ns, adapter = catalog.get_adapter(session, principal, namespace, name)
    require_scope(principal, ns.name, ns.private, "write")
    return ns, adapter


def checked_successor(
    session: Session, principal: Principal, ns: Namespace, adapter: Adapter, successor: str
) -> str:
    """The successor as a canonical ref, if it names something the caller can read.

    A bare name means the caller's default namespace; 422 ``invalid_ref`` for a ref
    that does not parse, names nothing, or names the deprecated adapter itself.
    """
    ref = catalog.parse(successor, principal)
    try:
        successor_ns, _, _ = catalog.resolve_ref(session, principal, ref.canonical())
    except NotFound as exc:
        raise InvalidRef(f"successor {successor!r} not found: {exc}") from exc
    if successor_ns.private and successor_ns.id != ns.id:
        raise InvalidRef(
            f"successor {successor!r} is in the private namespace '{successor_ns.name}': "
            f"everyone who reads '{ns.name}/{adapter.name}' would see its name; name a "
            f"public adapter or one in '{ns.name}'"
        )
    if (ref.namespace, ref.name) == (ns.name, adapter.name):
        raise InvalidRef(
            f"successor {successor!r} is '{ns.name}/{adapter.name}' itself: name another adapter"
        )
    return ref.canonical()


def _result(ns: Namespace, adapter: Adapter) -> dict[str, Any]:
    return {
        "namespace": ns.name,
        "name": adapter.name,
        "deprecation": catalog.deprecation_view(adapter),
    }


def _record(
    session: Session,
    principal: Principal,
    action: str,
    ns: Namespace,
    adapter: Adapter,
    before: dict[str, Any] | None,
) -> None:
    audit.record(
        session,
        principal,
        action,
        namespace=ns.name,
        target=f"{ns.name}/{adapter.name}",
        detail={"before": before, "after": catalog.deprecation_view(adapter)},
    )


def deprecate(
    session: Session,
    principal: Principal,
    namespace: str,
    name: str,
    message: str,
    successor: str | None,
) -> dict[str, Any]:
    """Mark the adapter deprecated (or change its message/successor); audited."""
    ns, adapter = _writable(session, principal, namespace, name)
    text = message.strip()
    if not text:
        raise InvalidRequest("invalid request: message is blank: say why, and what to use instead")
    checked = (
        None if successor is None else checked_successor(session, principal, ns, adapter, successor)
    )
    before = catalog.deprecation_view(adapter)
    adapter.deprecated_message = text
    adapter.deprecated_successor = checked
    adapter.deprecated_by = principal.name
    adapter.deprecated_at = utcnow()
    session.add(adapter)
    session.flush()
    _record(session, principal, "adapter.deprecate", ns, adapter, before)
    return _result(ns, adapter)


def undeprecate(
    session: Session, principal: Principal, namespace: str, name: str
) -> dict[str, Any]:
    """Clear the adapter's deprecation (nothing audited if it was not deprecated)."""
    ns, adapter = _writable(session, principal, namespace, name)
    before = catalog.deprecation_view(adapter)
    if before is not None:
        adapter.deprecated_message = adapter.deprecated_successor = None
        adapter.deprecated_by = None
        adapter.deprecated_at = None
        session.add(adapter)
        session.flush()
        _record(session, principal, "adapter.undeprecate", ns, adapter, before)
    return _result(ns, adapter)
