"""Base-model catalog routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from registry.api.deps import BaseUrlDep, ContextDep, PageDep, SessionDep, StrictQuery
from registry.schemas import BaseModelDetail, BaseModelSummary, Page, error_responses
from registry.services import base_models

router = APIRouter(prefix="/v1", tags=["base-models"])


@router.get(
    "/base-models",
    response_model=Page[BaseModelSummary],
    dependencies=[StrictQuery],
    responses=error_responses(400, 422),
)
def list_base_models(session: SessionDep, page: PageDep) -> dict[str, Any]:
    """The registered base models, by name, a page at a time."""
    return base_models.list_base_models(session, page).as_dict()


@router.get(
    "/base-models/{name:path}",
    response_model=BaseModelDetail,
    responses=error_responses(404, 409, 422),
)
def get_base_model(
    name: str, session: SessionDep, ctx: ContextDep, base: BaseUrlDep
) -> dict[str, Any]:
    """One base model: config, linear-module shapes, files with download URLs."""
    bm = base_models.get_base_model(session, name)
    return base_models.base_model_view(session, ctx, bm, base)
