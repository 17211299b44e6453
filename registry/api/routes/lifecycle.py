"""Lifecycle routes: yank and unyank a version, deprecate an adapter, delete (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from loreg.refs import MAX_VERSION
from registry.api.deps import PrincipalDep, SessionDep
from registry.schemas import (
    DeleteResult,
    DeprecateRequest,
    DeprecationResult,
    YankRequest,
    YankResult,
    error_responses,
)
from registry.services import deletion, deprecation, yank

router = APIRouter(prefix="/v1", tags=["catalog"])
VersionNumber = Annotated[int, Path(ge=1, le=MAX_VERSION)]
_VERSION = "/adapters/{namespace}/{name}/versions/{number}"


@router.post(
    f"{_VERSION}/yank",
    response_model=YankResult,
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def yank_version(
    namespace: str,
    name: str,
    number: VersionNumber,
    session: SessionDep,
    principal: PrincipalDep,
    body: YankRequest | None = None,
) -> dict[str, Any]:
    """Yank a version: latest and ``main`` skip it, exact refs still pull it (audited)."""
    reason = body.reason if body is not None else None
    return yank.yank(session, principal, namespace, name, number, reason)


@router.post(
    f"{_VERSION}/unyank",
    response_model=YankResult,
    responses=error_responses(401, 403, 404, 422),
)
def unyank_version(
    namespace: str, name: str, number: VersionNumber, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Unyank a version (audited)."""
    return yank.unyank(session, principal, namespace, name, number)


@router.put(
    "/adapters/{namespace}/{name}/deprecation",
    response_model=DeprecationResult,
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def deprecate_adapter(
    namespace: str,
    name: str,
    body: DeprecateRequest,
    session: SessionDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Mark an adapter deprecated, with a message and an optional successor (audited)."""
    return deprecation.deprecate(session, principal, namespace, name, body.message, body.successor)


@router.delete(
    "/adapters/{namespace}/{name}/deprecation",
    response_model=DeprecationResult,
    responses=error_responses(401, 403, 404, 422),
)
def undeprecate_adapter(
    namespace: str, name: str, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Clear an adapter's deprecation (audited)."""
    return deprecation.undeprecate(session, principal, namespace, name)


@router.delete(
    _VERSION,
    response_model=DeleteResult,
    responses=error_responses(401, 403, 404, 409, 422),
)
def delete_version(
    namespace: str, name: str, number: VersionNumber, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Delete a version (admin); 409 ``conflict`` listing the versions made from it."""
    return deletion.delete_version(session, principal, namespace, name, number)


@router.delete(
    "/adapters/{namespace}/{name}",
    response_model=DeleteResult,
    responses=error_responses(401, 403, 404, 409, 422),
)
def delete_adapter(
    namespace: str, name: str, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Delete an adapter and all its versions (admin); 409 if anything outside depends on them."""
    return deletion.delete_adapter(session, principal, namespace, name)
