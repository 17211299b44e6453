"""Catalog routes: identity, namespaces, adapters, resolve, aliases (health: admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials

from registry.api.deps import PrincipalDep, SessionDep, bearer_scheme
from registry.api.fast_resolve import resolve_answer
from registry.schemas import (
    AdapterDetail,
    AdapterSummary,
    AliasRequest,
    AliasView,
    NamespaceRequest,
    NamespaceView,
    ResolvedVersion,
    WhoAmI,
    error_responses,
)
from registry.services import catalog, tokens

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/whoami", response_model=WhoAmI, responses=error_responses(401))
def whoami(principal: PrincipalDep) -> dict[str, Any]:
    """Who the bearer token belongs to and what it may do."""
    levels = {1: "read", 2: "write", 3: "admin"}
    return {
        "authenticated": principal.authenticated,
        "token_name": principal.name,
        "default_namespace": principal.default_namespace,
        "grants": [
            {"namespace": ns, "scope": levels[lv]} for ns, lv in sorted(principal.grants.items())
        ],
    }


@router.get("/namespaces", response_model=list[NamespaceView], responses=error_responses(401))
def list_namespaces(session: SessionDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    """Namespaces visible to the caller."""
    return catalog.list_namespaces(session, principal)


@router.post(
    "/namespaces",
    status_code=201,
    response_model=NamespaceView,
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
def create_namespace(
    body: NamespaceRequest, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Create a namespace (admin)."""
    return tokens.create_namespace(session, principal, body)


@router.get(
    "/adapters",
    response_model=list[AdapterSummary],
    responses=error_responses(401, 404, 422),
)
def list_adapters(
    session: SessionDep, principal: PrincipalDep, namespace: str | None = None
) -> list[dict[str, Any]]:
    """Adapters visible to the caller, optionally in one namespace."""
    return catalog.list_adapters(session, principal, namespace)


@router.get(
    "/adapters/{namespace}/{name}",
    response_model=AdapterDetail,
    responses=error_responses(401, 404, 422),
)
def get_adapter(
    namespace: str, name: str, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """One adapter with its versions and aliases."""
    return catalog.adapter_detail(session, principal, namespace, name)


@router.get(
    "/resolve/{ref:path}",
    response_model=ResolvedVersion,
    responses=error_responses(401, 404, 409, 422),
)
async def resolve(
    ref: str,
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Response:
    """Resolve a ref to a version manifest with short-lived download URLs.

    One indexed query, the rest cached (registry.services.resolve). A plain GET is
    answered before routing by registry.api.fast_resolve, with the same code.
    """
    return await resolve_answer(request.app.state.ctx, request, ref)


@router.put(
    "/adapters/{namespace}/{name}/aliases/{alias}",
    response_model=AliasView,
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def set_alias(
    namespace: str,
    name: str,
    alias: str,
    body: AliasRequest,
    session: SessionDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Create or move an alias (audited)."""
    return catalog.set_alias(session, principal, namespace, name, alias, body.version)


@router.delete(
    "/adapters/{namespace}/{name}/aliases/{alias}",
    response_model=AliasView,
    responses=error_responses(401, 403, 404, 422),
)
def remove_alias(
    namespace: str, name: str, alias: str, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Delete an alias (audited)."""
    return catalog.remove_alias(session, principal, namespace, name, alias)
