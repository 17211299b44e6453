"""Search route: adapters by text and filters, one page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from loreg.vocabulary import SearchSort
from registry.api.deps import PageDep, PrincipalDep, SessionDep
from registry.schemas import SearchPage, error_responses
from registry.services import search as search_service

router = APIRouter(prefix="/v1", tags=["search"])

_TAGS_HELP = (
    "tags the adapter must all carry: repeat the parameter (tags=a&tags=b) or give a "
    "comma list (tags=a,b); compared lower-cased"
)


@router.get(
    "/search",
    response_model=SearchPage,
    responses=error_responses(400, 401, 422),
)
def search(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    q: Annotated[
        str | None,
        Query(
            max_length=search_service.MAX_QUERY_CHARS,
            description="words to find in name, tags, description and card text "
            "(all must occur; a word also matches longer words it begins)",
        ),
    ] = None,
    namespace: Annotated[str | None, Query(max_length=64)] = None,
    base_model: Annotated[str | None, Query(max_length=256)] = None,
    task_type: Annotated[str | None, Query(max_length=64, description="e.g. CAUSAL_LM")] = None,
    tags: Annotated[list[str] | None, Query(description=_TAGS_HELP)] = None,
    rank_min: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    rank_max: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    peft_type: Annotated[str | None, Query(max_length=32, description="e.g. LORA")] = None,
    kind: Annotated[str | None, Query(max_length=16, description="adapter or dataset")] = None,
    created_after: Annotated[
        datetime | None, Query(description="adapters created at or after (ISO-8601)")
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="adapters created before (ISO-8601)")
    ] = None,
    has_alias: Annotated[bool | None, Query()] = None,
    yanked: Annotated[
        bool, Query(description="true: only adapters whose every version is yanked")
    ] = False,
    sort: Annotated[
        SearchSort | None,
        Query(
            description="relevance (the default with q), created (newest first; the "
            "default without q) or name"
        ),
    ] = None,
) -> dict[str, Any]:
    """Adapters the caller may see matching a text query and filters (cursor pages)."""
    search_service.check_parameters(list(request.query_params.keys()))
    query = search_service.build_query(
        q=q,
        namespace=namespace,
        base_model=base_model,
        task_type=task_type,
        tags=tags,
        rank_min=rank_min,
        rank_max=rank_max,
        peft_type=peft_type,
        kind=kind,
        created_after=created_after,
        created_before=created_before,
        has_alias=has_alias,
        yanked=yanked,
        sort=sort,
    )
    return search_service.search(session, principal, query, page).as_dict()
