"""The audit log: who published, aliased, deleted, created tokens."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from registry.auth import Principal
from registry.models import AuditEvent


def record(
    session: Session,
    principal: Principal,
    action: str,
    *,
    namespace: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit row in the caller's transaction (committed with the change it records)."""
    session.add(
        AuditEvent(
            actor=principal.name or "anonymous",
            action=action,
            namespace=namespace,
            target=target,
            detail=detail,
        )
    )
