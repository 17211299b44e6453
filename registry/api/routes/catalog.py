"""Catalog routes: identity, namespaces, adapters, resolve, aliases (health: admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials

from loreg.vocabulary import AdapterSort
from registry.api.deps import (
    ContextDep,
    PageDep,
    PrincipalDep,
    SessionDep,
    StrictQuery,
    bearer_scheme,
)
from registry.api.fast_resolve import resolve_answer
from registry.schemas import (
    AdapterDetail,
    AdapterSummary,
    AliasRequest,
    AliasView,
    NamespaceRequest,
    NamespaceView,
    Page,
    ResolvedVersion,
    VersionSummary,
    WhoAmI,
    error_responses,
)
from registry.services import catalog, listings, tokens

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


@router.get(
    "/namespaces",
    response_model=Page[NamespaceView],
    dependencies=[StrictQuery],
    responses=error_responses(400, 401, 422),
)
def list_namespaces(session: SessionDep, principal: PrincipalDep, page: PageDep) -> dict[str, Any]:
    """Namespaces visible to the caller, by name, a page at a time."""
    return listings.list_namespaces(session, principal, page).as_dict()


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
    response_model=Page[AdapterSummary],
    dependencies=[StrictQuery],
    responses=error_responses(400, 401, 404, 422),
)
def list_adapters(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    namespace: Annotated[str | None, Query(description="only this namespace's adapters")] = None,
    sort: Annotated[
        AdapterSort,
        Query(description="name: by namespace (oldest first), then name; updated: newest first"),
    ] = AdapterSort.NAME,
) -> dict[str, Any]:
    """Adapters visible to the caller, optionally in one namespace, a page at a time."""
    return listings.list_adapters(session, principal, page, namespace, sort).as_dict()


@router.get(
    "/adapters/{namespace}/{name}",
    response_model=AdapterDetail,
    responses=error_responses(401, 404, 422),
)
def get_adapter(
    namespace: str, name: str, session: SessionDep, principal: PrincipalDep, ctx: ContextDep
) -> dict[str, Any]:
    """One adapter: its summary, aliases and first page of versions (newest first)."""
    return listings.adapter_detail(session, principal, namespace, name, ctx.settings.secret_key)


@router.get(
    "/adapters/{namespace}/{name}/versions",
    response_model=Page[VersionSummary],
    dependencies=[StrictQuery],
    responses=error_responses(400, 401, 404, 422),
)
def list_versions(
    namespace: str, name: str, session: SessionDep, principal: PrincipalDep, page: PageDep
) -> dict[str, Any]:
    """An adapter's versions, newest first, a page at a time."""
    return listings.list_versions(session, principal, namespace, name, page).as_dict()


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
