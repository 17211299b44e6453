"""The audit log route: ``GET /v1/audit`` (admins; filters; newest first, a page at a time)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from registry.api.deps import PageDep, PrincipalDep, SessionDep, StrictQuery
from registry.schemas import AuditPage, error_responses
from registry.services import audit

router = APIRouter(prefix="/v1", tags=["audit"])
_Text = Annotated[str | None, Query(min_length=1, max_length=512)]


@router.get(
    "/audit",
    response_model=AuditPage,
    responses=error_responses(400, 401, 403, 404, 422),
    dependencies=[StrictQuery],
)
def list_audit(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    actor: _Text = None,
    action: _Text = None,
    namespace: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    target: _Text = None,
    since: Annotated[datetime | None, Query(description="from this time on (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="before this time (exclusive)")] = None,
) -> dict[str, Any]:
    """Audit rows newest first: admins of ``*`` read all, admins of a namespace its rows."""
    return audit.list_events(
        session,
        principal,
        page,
        actor=actor,
        action=action,
        namespace=namespace,
        target=target,
        since=since,
        until=until,
    ).as_dict()
