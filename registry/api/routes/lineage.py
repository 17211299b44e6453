"""Lineage routes: the lineage graph of a version or a base model, as JSON or SVG."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from loreg.vocabulary import LineageDirection, LineageMedia
from registry.api.deps import PrincipalDep, SessionDep
from registry.schemas import Ancestry, error_responses
from registry.services import base_models, catalog, lineage, lineage_graph

router = APIRouter(prefix="/v1/lineage", tags=["lineage"])

SVG_MEDIA_TYPE = "image/svg+xml"

DirectionQuery = Annotated[
    LineageDirection,
    Query(description="up: to parents (default); down: to dependents; both"),
]
DepthQuery = Annotated[
    int,
    Query(
        ge=1,
        le=lineage.MAX_LINEAGE_DEPTH,
        description=f"most edges from the root (1..{lineage.MAX_LINEAGE_DEPTH}, the default)",
    ),
]
FormatQuery = Annotated[
    LineageMedia,
    Query(alias="format", description="json (default) or svg: the graph drawn, image/svg+xml"),
]
_RESPONSES = {
    **error_responses(401, 404, 422),
    200: {"content": {SVG_MEDIA_TYPE: {"schema": {"type": "string"}}}},
}


def _answer(graph: dict[str, Any], media: LineageMedia) -> dict[str, Any] | Response:
    if media == LineageMedia.SVG:
        return Response(lineage_graph.render_svg(graph), media_type=SVG_MEDIA_TYPE)
    return graph


@router.get("/versions/{ref:path}", response_model=Ancestry, responses=_RESPONSES)
def version_ancestry(
    ref: str,
    session: SessionDep,
    principal: PrincipalDep,
    direction: DirectionQuery = LineageDirection.UP,
    depth: DepthQuery = lineage.MAX_LINEAGE_DEPTH,
    media: FormatQuery = LineageMedia.JSON,
) -> Any:
    """The lineage graph of a version (adapter or dataset): parents, dependents or both."""
    _, _, version = catalog.resolve_ref(session, principal, ref)
    graph = lineage.ancestry(
        session, lineage.node_of(version), principal, direction=direction, depth=depth
    )
    return _answer(graph, media)


@router.get("/base-models/{name:path}", response_model=Ancestry, responses=_RESPONSES)
def base_model_ancestry(
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    direction: DirectionQuery = LineageDirection.UP,
    depth: DepthQuery = lineage.MAX_LINEAGE_DEPTH,
    media: FormatQuery = LineageMedia.JSON,
) -> Any:
    """The lineage graph of a base model (e.g. a merge result): parents, dependents or both."""
    bm = base_models.get_base_model(session, name)
    graph = lineage.ancestry(
        session, lineage.node_of(bm), principal, direction=direction, depth=depth
    )
    return _answer(graph, media)
