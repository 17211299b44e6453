"""What every page handler depends on: the visitor and the page's list size."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from registry.api.deps import ContextDep
from registry.services.context import Context
from registry.services.pagination import PageRequest
from registry.web.security import Visitor, visitor_of

#: Rows per list page in the browser.
PAGE_ROWS = 25
#: The tag every page route carries: error answers of these routes are HTML pages.
WEB_TAG = "web"


def get_visitor(ctx: ContextDep, request: Request) -> Visitor:
    """The page's visitor (see :func:`registry.web.security.visitor_of`)."""
    visitor = visitor_of(ctx, request)
    request.state.visitor = visitor  # an error page of this request shows who is signed in
    return visitor


def page_of(ctx: Context, cursor: str | None, rows: int | None = None) -> PageRequest:
    """A list page request of ``rows`` (:data:`PAGE_ROWS`) from ``cursor`` (signed like
    the API's)."""
    limit = PAGE_ROWS if rows is None else rows
    return PageRequest(limit=limit, cursor=cursor or None, secret=ctx.settings.secret_key)


def external_url(ctx: Context, request: Request) -> str:
    """The registry's URL as users reach it (``LOREG_PUBLIC_URL`` when set)."""
    return (ctx.settings.public_url or str(request.base_url)).rstrip("/")


VisitorDep = Annotated[Visitor, Depends(get_visitor)]
