"""Base model pages and the audit page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from loreg.vocabulary import LineageDirection
from registry.api.deps import ContextDep, SessionDep
from registry.services import audit, base_models, lineage
from registry.web.pages.common import WEB_TAG, VisitorDep, external_url, page_of
from registry.web.templating import render

router = APIRouter(tags=[WEB_TAG])


@router.get("/base-models", response_class=HTMLResponse)
def base_models_page(
    request: Request, ctx: ContextDep, session: SessionDep, visitor: VisitorDep
) -> Any:
    """The registered base models, by name (the base-model catalog is public)."""
    found = base_models.list_base_models(session, page_of(ctx, request.query_params.get("cursor")))
    return render(
        request,
        visitor,
        "base_models.html",
        title="Base models",
        models=found.items,
        next_cursor=found.next_cursor,
    )


@router.get("/base-models/{name:path}", response_class=HTMLResponse)
def base_model_page(
    name: str, request: Request, ctx: ContextDep, session: SessionDep, visitor: VisitorDep
) -> Any:
    """One base model: architecture, linear modules, files, and the versions built on it."""
    bm = base_models.get_base_model(session, name)
    view = base_models.base_model_view(session, ctx, bm, external_url(ctx, request))
    graph = lineage.ancestry(
        session, lineage.node_of(bm), visitor.principal, direction=LineageDirection.BOTH, depth=1
    )
    return render(
        request,
        visitor,
        "base_model.html",
        title=f"Base model {bm.name}",
        model=view,
        edges=graph["edges"],
        truncated=graph["truncated"],
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, ctx: ContextDep, session: SessionDep, visitor: VisitorDep) -> Any:
    """The audit log, newest first (admins of ``*`` see every row, namespace admins theirs)."""
    action = request.query_params.get("action") or None
    found = audit.list_events(
        session,
        visitor.principal,
        page_of(ctx, request.query_params.get("cursor"), 50),
        action=action[:64] if action else None,
    )
    return render(
        request,
        visitor,
        "audit.html",
        title="Audit log",
        events=found.items,
        next_cursor=found.next_cursor,
        params={"action": action or ""},
    )
