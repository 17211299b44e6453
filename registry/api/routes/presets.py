"""Training preset routes: the built-ins and a namespace's own (``/v1/presets``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from registry.api.deps import PageDep, PrincipalDep, SessionDep
from registry.schemas import PresetPage, PresetRequest, PresetView, error_responses
from registry.services import presets

router = APIRouter(prefix="/v1/presets", tags=["presets"])
PresetName = Annotated[str, Path(min_length=1, max_length=64)]
NamespaceQuery = Annotated[
    str | None,
    Query(max_length=64, description="the namespace (default: the token's default namespace)"),
]


@router.get("", response_model=PresetPage, responses=error_responses(400, 404, 422))
def list_presets(
    session: SessionDep, principal: PrincipalDep, page: PageDep, namespace: NamespaceQuery = None
) -> dict[str, Any]:
    """The built-in presets, then the namespace's own (oldest first)."""
    return presets.list_presets(session, principal, namespace, page).as_dict()


@router.get("/{name}", response_model=PresetView, responses=error_responses(404, 422))
def get_preset(
    name: PresetName, session: SessionDep, principal: PrincipalDep, namespace: NamespaceQuery = None
) -> dict[str, Any]:
    """A preset: the namespace's own, else a built-in."""
    return presets.get_preset(session, principal, namespace, name)


@router.put(
    "/{name}",
    response_model=PresetView,
    responses={
        201: {"model": PresetView, "description": "created (200: replaced)"},
        **error_responses(400, 401, 403, 404, 409, 413, 422),
    },
)
def save_preset(
    name: PresetName,
    body: PresetRequest,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    namespace: NamespaceQuery = None,
) -> dict[str, Any]:
    """Create (201) or replace (200) a namespace's preset (write scope); built-ins are 409."""
    view, created = presets.save_preset(session, principal, namespace, name, body)
    response.status_code = 201 if created else 200
    return view


@router.delete(
    "/{name}", response_model=PresetView, responses=error_responses(401, 403, 404, 409, 422)
)
def delete_preset(
    name: PresetName, session: SessionDep, principal: PrincipalDep, namespace: NamespaceQuery = None
) -> dict[str, Any]:
    """Delete a namespace's preset (write scope); answers what it held."""
    return presets.delete_preset(session, principal, namespace, name)
