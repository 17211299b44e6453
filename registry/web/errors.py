"""Error answers of the pages: the API's status and message, as an HTML page.

The app's exception handlers build the JSON error answer first (one place decides
status, code and message); for a page request :func:`as_page` turns it into the
error page, keeping the status (a private namespace is a 404 page, never a 500).
"""

from __future__ import annotations

import json

from fastapi import Request
from starlette.responses import Response

from registry.auth import ANONYMOUS
from registry.web.pages.common import WEB_TAG
from registry.web.security import Visitor
from registry.web.templating import render

_API_PREFIXES = ("/v1/", "/hf/", "/static/", "/healthz", "/metrics", "/docs", "/openapi")


def is_page_request(request: Request) -> bool:
    """A request to a page route, or a browser's request for a path no route serves."""
    route = request.scope.get("route")
    if route is not None:
        return WEB_TAG in (getattr(route, "tags", None) or [])
    path = request.url.path
    if path.startswith(_API_PREFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


def as_page(request: Request, response: Response) -> Response:
    """The error page of a JSON error ``response`` when ``request`` is a page request."""
    if not is_page_request(request) or response.status_code < 400:
        return response
    try:
        error = json.loads(bytes(response.body))["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "error", "the request could not be answered"
    visitor = getattr(request.state, "visitor", None) or Visitor(ANONYMOUS)
    page = render(
        request,
        visitor,
        "error.html",
        status_code=response.status_code,
        title=f"{response.status_code} {code.replace('_', ' ')}",
        status=response.status_code,
        code=code,
        message=message,
    )
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        page.headers["Retry-After"] = retry_after
    return page
