"""Home/search, datasets, adapter and version pages, and a version's lineage page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from loreg.vocabulary import ArtifactKind, LineageDirection, SearchSort
from registry.api.deps import ContextDep, SessionDep
from registry.errors import InvalidRequest, RegistryError
from registry.services import cards, catalog, lineage, lineage_graph, listings, search_index
from registry.services import search as search_service
from registry.services.pagination import PageRequest
from registry.validation.peft_config import TASK_TYPES
from registry.web.pages.common import WEB_TAG, VisitorDep, external_url, page_of
from registry.web.readme import render_readme
from registry.web.snippets import snippets
from registry.web.spectrum import spectrum_svg
from registry.web.templating import render

router = APIRouter(tags=[WEB_TAG])

#: The filters of the search form, as they appear in the page's URL.
SEARCH_FIELDS = ("q", "namespace", "base_model", "tags", "task_type", "rank_min", "rank_max")
#: Versions listed per page on an adapter page.
VERSION_ROWS = 20


def _int_field(name: str, value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, not {value[:40]!r}") from None
    if not 0 <= number <= 1_000_000:
        raise InvalidRequest(f"{name} must be between 0 and 1000000")
    return number


def _sort(value: str | None) -> SearchSort | None:
    if not value:
        return None
    try:
        return SearchSort(value)
    except ValueError:
        choices = ", ".join(s.value for s in SearchSort)
        raise InvalidRequest(f"sort must be one of {choices}, not {value[:40]!r}") from None


def _search_page(
    request: Request, ctx: ContextDep, session: SessionDep, visitor: VisitorDep, kind: str | None
) -> HTMLResponse:
    params = {name: request.query_params.get(name) or "" for name in (*SEARCH_FIELDS, "sort")}
    principal = visitor.principal
    hits: list[dict[str, Any]] = []
    next_cursor: str | None = None
    error: str | None = None
    try:
        if len(params["q"]) > search_service.MAX_QUERY_CHARS:
            raise InvalidRequest(f"the search text is limited to {search_service.MAX_QUERY_CHARS}")
        query = search_service.build_query(
            q=params["q"] or None,
            namespace=params["namespace"] or None,
            base_model=params["base_model"] or None,
            task_type=params["task_type"] or None,
            tags=[params["tags"]] if params["tags"] else None,
            rank_min=_int_field("rank_min", params["rank_min"]),
            rank_max=_int_field("rank_max", params["rank_max"]),
            kind=kind,
            sort=_sort(params["sort"]),
        )
        found = search_service.search(
            session, principal, query, page_of(ctx, request.query_params.get("cursor"))
        )
        hits, next_cursor = found.items, found.next_cursor
    except RegistryError as exc:
        if exc.status >= 500:
            raise
        error = exc.message
    namespaces = listings.list_namespaces(session, principal, PageRequest(limit=50)).items
    return render(
        request,
        visitor,
        "home.html",
        status_code=422 if error else 200,
        title="Datasets" if kind == "dataset" else "Adapters",
        kind=kind,
        params=params,
        hits=hits,
        next_cursor=next_cursor,
        error=error,
        namespaces=namespaces,
        task_types=sorted(TASK_TYPES),
        sorts=[s.value for s in SearchSort],
    )


@router.get("/", response_class=HTMLResponse)
def home(request: Request, ctx: ContextDep, session: SessionDep, visitor: VisitorDep) -> Any:
    """Home: search box and filters over the adapters the visitor may see, newest first."""
    return _search_page(request, ctx, session, visitor, kind="adapter")


@router.get("/datasets", response_class=HTMLResponse)
def datasets(request: Request, ctx: ContextDep, session: SessionDep, visitor: VisitorDep) -> Any:
    """The datasets (chat-JSONL artifacts train jobs read), searched like adapters."""
    return _search_page(request, ctx, session, visitor, kind="dataset")


def _version_page(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    visitor: VisitorDep,
    namespace: str,
    name: str,
    number: int | None,
) -> HTMLResponse:
    principal = visitor.principal
    secret = ctx.settings.secret_key
    detail = listings.adapter_detail(session, principal, namespace, name, secret)
    cursor = request.query_params.get("cursor")
    versions = detail["recent_versions"]
    if cursor:
        versions = listings.list_versions(
            session, principal, namespace, name, page_of(ctx, cursor, VERSION_ROWS)
        ).as_dict()
    if number is None:
        number = detail["latest_version"] or (
            versions["items"][0]["version"] if versions["items"] else None
        )
    by_version: dict[int, list[str]] = {}
    for alias, aliased in sorted(detail["aliases"].items()):
        by_version.setdefault(aliased, []).append(alias)
    card: dict[str, Any] | None = None
    selected: dict[str, Any] | None = None
    kind = ArtifactKind.ADAPTER.value
    if number is not None:
        card = cards.card_view(session, principal, namespace, name, number)
        _, row, version = catalog.resolve_ref(session, principal, f"{namespace}/{name}-v{number}")
        kind = row.kind
        selected = {
            "version": version.number,
            "digest": version.digest,
            "size": version.size,
            "created_at": version.created_at,
            "created_by": version.created_by,
            "base_model": version.base_model,
            "config": version.config or {},
            "yanked": catalog.yank_view(version),
            "aliases": by_version.get(version.number, []),
            "tags": search_index.tags_of(version),
        }
    body = card.get("card") if card else None
    modules = (body or {}).get("modules") or []
    return render(
        request,
        visitor,
        "adapter.html",
        title=f"{detail['namespace']}/{detail['name']}",
        adapter=detail,
        versions=versions,
        aliases_of=by_version,
        selected=selected,
        card=card,
        card_body=body,
        readme=render_readme(card.get("readme")) if card else Markup(""),
        spectrum=spectrum_svg(modules) if modules else None,
        snippets=snippets(
            external_url(ctx, request),
            detail["namespace"],
            detail["name"],
            number,
            selected["base_model"] if selected else None,
            kind,
        )
        if number is not None
        else [],
        kind=kind,
        can_write=principal.can(detail["namespace"], "write"),
    )


@router.get("/adapters/{namespace}/{name}", response_class=HTMLResponse)
def adapter_page(
    namespace: str,
    name: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    visitor: VisitorDep,
) -> Any:
    """An adapter: its versions, and the newest version's card, README and snippets."""
    return _version_page(request, ctx, session, visitor, namespace, name, None)


@router.get("/adapters/{namespace}/{name}/versions/{number}", response_class=HTMLResponse)
def version_page(
    namespace: str,
    name: str,
    number: int,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    visitor: VisitorDep,
) -> Any:
    """One version of an adapter: the adapter page with that version selected."""
    return _version_page(request, ctx, session, visitor, namespace, name, number)


@router.get("/adapters/{namespace}/{name}/versions/{number}/lineage", response_class=HTMLResponse)
def lineage_page(
    namespace: str,
    name: str,
    number: int,
    request: Request,
    session: SessionDep,
    visitor: VisitorDep,
) -> Any:
    """A version's ancestry and dependents, drawn, with each edge's parameters listed."""
    principal = visitor.principal
    _, _, version = catalog.resolve_ref(session, principal, f"{namespace}/{name}-v{number}")
    graph = lineage.ancestry(
        session, lineage.node_of(version), principal, direction=LineageDirection.BOTH
    )
    svg = lineage_graph.render_svg(graph)
    svg = svg.split("?>", 1)[1] if svg.startswith("<?xml") else svg
    return render(
        request,
        visitor,
        "lineage.html",
        title=f"Lineage of {namespace}/{name}-v{number}",
        namespace=namespace,
        name=name,
        number=number,
        graph=graph,
        svg=Markup(svg),  # every text in it is XML-escaped by render_svg
    )
