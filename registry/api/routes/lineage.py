"""Lineage routes: the whole ancestry of a version or a base model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from registry.api.deps import PrincipalDep, SessionDep
from registry.schemas import Ancestry, error_responses
from registry.services import base_models, catalog, lineage

router = APIRouter(prefix="/v1/lineage", tags=["lineage"])


@router.get(
    "/versions/{ref:path}", response_model=Ancestry, responses=error_responses(401, 404, 422)
)
def version_ancestry(ref: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every lineage edge from a version (adapter or dataset) back to its roots."""
    _, _, version = catalog.resolve_ref(session, principal, ref)
    return lineage.ancestry(session, lineage.node_of(version), principal)


@router.get(
    "/base-models/{name:path}", response_model=Ancestry, responses=error_responses(404, 422)
)
def base_model_ancestry(name: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every lineage edge from a base model (e.g. a merge result) back to its roots."""
    bm = base_models.get_base_model(session, name)
    return lineage.ancestry(session, lineage.node_of(bm), principal)
