"""The audit log: one row per action (who, when, what, before and after), and its list.

Every change someone makes to the catalog writes one row in the transaction of the
change itself (:func:`record`), so a change and its row commit or roll back together.
``detail`` always holds ``before`` and ``after`` (null where the thing did not exist
before, or no longer exists after), plus any facts of the action.

Who reads it (``GET /v1/audit``, :func:`list_events`): a token with ``admin`` on ``*``
reads every row; a token with ``admin`` on some namespaces reads those namespaces' rows
(not the global ones: tokens, base models); anyone else gets 403 (401 without a token).
Newest first, by ``(at, id)`` descending, a keyset page at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from loreg.vocabulary import Scope
from registry.auth import ALL_NAMESPACES, SCOPE_LEVELS, Principal, require_scope
from registry.errors import Forbidden, InvalidRequest, Unauthorized
from registry.models import AuditEvent
from registry.services.pagination import Page, PageRequest, SortKey, paginate

#: The filters of ``GET /v1/audit`` (with ``limit`` and ``cursor``, its only parameters).
FILTERS = ("actor", "action", "namespace", "target", "since", "until")

_KEYS = [SortKey(col(AuditEvent.at), descending=True), SortKey(col(AuditEvent.id), descending=True)]


def record(
    session: Session,
    principal: Principal,
    action: str,
    *,
    namespace: str | None = None,
    target: str | None = None,
    before: Any = None,
    after: Any = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit row in the caller's transaction (committed with the change it records).

    ``before`` and ``after`` are the state the action changed (None: did not exist);
    ``detail`` adds facts of the action itself.
    """
    session.add(
        AuditEvent(
            actor=principal.name or "anonymous",
            action=action,
            namespace=namespace,
            target=target,
            detail={"before": before, "after": after, **(detail or {})},
        )
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def event_view(event: AuditEvent) -> dict[str, Any]:
    """The JSON view of one audit row."""
    detail = dict(event.detail or {})
    detail.setdefault("before", None)
    detail.setdefault("after", None)
    return {
        "id": event.id,
        "at": _aware(event.at).isoformat(),
        "actor": event.actor or "anonymous",
        "action": event.action,
        "namespace": event.namespace,
        "target": event.target,
        "detail": detail,
    }


def _readable_namespaces(principal: Principal) -> list[str] | None:
    """The namespaces whose rows the caller reads (None: every row); 401/403 if none."""
    if principal.can(ALL_NAMESPACES, "admin"):
        return None
    admin = SCOPE_LEVELS[Scope.ADMIN]
    mine = sorted(ns for ns, level in principal.grants.items() if level >= admin)
    if mine:
        return mine
    if not principal.authenticated:
        raise Unauthorized("the audit log needs an admin token: pass --token or set LOREG_TOKEN")
    raise Forbidden(
        f"token '{principal.name}' lacks 'admin' scope: the audit log is for admins "
        "(of '*', or of a namespace for its rows)"
    )


def _moment(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidRequest(f"{name} must carry a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return value.astimezone(UTC)


def list_events(
    session: Session,
    principal: Principal,
    page: PageRequest,
    *,
    actor: str | None = None,
    action: str | None = None,
    namespace: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[dict[str, Any]]:
    """Audit rows the caller may read, newest first, filtered (``since`` inclusive,
    ``until`` exclusive)."""
    readable = _readable_namespaces(principal)
    statement = select(AuditEvent)
    if namespace is not None:
        if readable is not None:
            require_scope(principal, namespace, False, "admin")
        statement = statement.where(AuditEvent.namespace == namespace)
    elif readable is not None:
        statement = statement.where(col(AuditEvent.namespace).in_(readable))
    for column, value in ((AuditEvent.actor, actor), (AuditEvent.action, action)):
        if value is not None:
            statement = statement.where(column == value)
    if target is not None:
        statement = statement.where(AuditEvent.target == target)
    start, end = _moment("since", since), _moment("until", until)
    if start is not None:
        statement = statement.where(col(AuditEvent.at) >= start)
    if end is not None:
        statement = statement.where(col(AuditEvent.at) < end)
    shape = [
        "audit",
        ",".join(readable) if readable is not None else "*",
        actor,
        action,
        namespace,
        target,
        start.isoformat() if start else None,
        end.isoformat() if end else None,
    ]
    return paginate(
        session,
        statement,
        _KEYS,
        page,
        scope=repr(shape),
        key_of=lambda e: [_aware(e.at), e.id],
        render=event_view,
    )
