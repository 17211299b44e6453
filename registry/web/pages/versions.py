"""Write actions of a version page: yank and unyank (write scope, CSRF-checked POSTs)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from registry.api.deps import SessionDep
from registry.services import yank as yank_service
from registry.web.pages.common import WEB_TAG, VisitorDep
from registry.web.security import CSRF_FIELD, check_csrf

router = APIRouter(tags=[WEB_TAG])

_VERSION = "/adapters/{namespace}/{name}/versions/{number}"


def _back(namespace: str, name: str, number: int) -> RedirectResponse:
    page = f"/adapters/{quote(namespace, safe='')}/{quote(name, safe='')}/versions/{number}"
    return RedirectResponse(page, status_code=303)


@router.post(f"{_VERSION}/yank")
def yank_version(
    namespace: str,
    name: str,
    number: int,
    request: Request,
    session: SessionDep,
    visitor: VisitorDep,
    reason: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> RedirectResponse:
    """Yank the version (latest skips it; exact refs still pull it), then show it again."""
    check_csrf(request, csrf)
    yank_service.yank(session, visitor.principal, namespace, name, number, reason.strip() or None)
    return _back(namespace, name, number)


@router.post(f"{_VERSION}/unyank")
def unyank_version(
    namespace: str,
    name: str,
    number: int,
    request: Request,
    session: SessionDep,
    visitor: VisitorDep,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> RedirectResponse:
    """Unyank the version, then show it again."""
    check_csrf(request, csrf)
    yank_service.unyank(session, visitor.principal, namespace, name, number)
    return _back(namespace, name, number)
