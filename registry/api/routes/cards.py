"""Card routes: a version's computed card, recomputing it, and the admin back-fill."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from loreg.refs import MAX_VERSION
from registry.api.deps import ContextDep, PrincipalDep, SessionDep
from registry.auth import require_scope
from registry.schemas import CardBackfillReport, VersionCardView, error_responses
from registry.services import cards

router = APIRouter(prefix="/v1", tags=["cards"])

#: A version number as a path segment (out of range: 422 naming it).
VersionNumber = Annotated[int, Path(ge=1, le=MAX_VERSION)]


@router.get(
    "/adapters/{namespace}/{name}/versions/{number}/card",
    response_model=VersionCardView,
    responses=error_responses(401, 404, 422),
)
def get_card(
    namespace: str, name: str, number: VersionNumber, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """A version's computed card: ``card_status`` (pending, ready, failed), the card, README."""
    return cards.card_view(session, principal, namespace, name, number)


@router.post(
    "/adapters/{namespace}/{name}/versions/{number}/card",
    status_code=202,
    response_model=VersionCardView,
    responses=error_responses(401, 403, 404, 422),
)
def recompute_card(
    namespace: str, name: str, number: VersionNumber, principal: PrincipalDep, ctx: ContextDep
) -> dict[str, Any]:
    """Compute a version's card again (write scope): retries a failed card; answers pending."""
    return cards.recompute(ctx, principal, namespace, name, number)


@router.post(
    "/admin/cards/backfill",
    response_model=CardBackfillReport,
    responses=error_responses(401, 403, 422),
)
def backfill_cards(
    principal: PrincipalDep,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=cards.MAX_BACKFILL_BATCH)] = cards.BACKFILL_BATCH,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Give up to ``limit`` versions without a card a card job (admin); call until remaining 0."""
    require_scope(principal, "*", False, "admin")
    return cards.backfill_batch(
        ctx, limit=limit, retry_failed=retry_failed, created_by=principal.name
    )
