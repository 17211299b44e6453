"""Signing in with an API token, and signing out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from registry.api.deps import ContextDep
from registry.auth import MAX_TOKEN_LENGTH, parse_bearer
from registry.errors import Unauthorized
from registry.services.resolve import principal_of
from registry.web.pages.common import WEB_TAG, VisitorDep
from registry.web.security import CSRF_FIELD, check_csrf, sign_in, sign_out
from registry.web.templating import render

router = APIRouter(tags=[WEB_TAG])


def _next_path(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (never another host)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, visitor: VisitorDep) -> Any:
    """The sign-in form: paste an API token (``loreg token create``)."""
    return render(
        request,
        visitor,
        "sign_in.html",
        title="Sign in",
        error=None,
        next=_next_path(request.query_params.get("next")),
    )


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in_submit(
    request: Request,
    ctx: ContextDep,
    visitor: VisitorDep,
    token: Annotated[str, Form(max_length=MAX_TOKEN_LENGTH + 64)] = "",
    next_path: Annotated[str | None, Form(alias="next")] = None,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> Any:
    """Check the token; keep it in an HttpOnly cookie and go on, or show why not (401)."""
    check_csrf(request, csrf)
    token = token.strip()
    try:
        principal = principal_of(ctx, parse_bearer(f"Bearer {token}") if token else None)
        if not principal.authenticated:
            raise Unauthorized("paste an API token (lrg_...) to sign in")
    except Unauthorized as exc:
        return render(
            request,
            visitor,
            "sign_in.html",
            status_code=401,
            title="Sign in",
            error=exc.message,
            next=_next_path(next_path),
        )
    response = RedirectResponse(_next_path(next_path), status_code=303)
    sign_in(request, response, token)
    return response


@router.post("/sign-out")
def sign_out_submit(
    request: Request, csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None
) -> RedirectResponse:
    """Forget the session cookie, then go home."""
    check_csrf(request, csrf)
    response = RedirectResponse("/", status_code=303)
    sign_out(response)
    return response
