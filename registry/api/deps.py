"""FastAPI dependencies: the service context, a DB session, the calling principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from registry.auth import Principal, parse_bearer
from registry.errors import InvalidRequest
from registry.services.context import Context
from registry.services.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest
from registry.services.resolve import principal_of


async def get_context(request: Request) -> Context:
    """The app's service context (settings, engine, store)."""
    return request.app.state.ctx


def get_session(ctx: Annotated[Context, Depends(get_context)]) -> Iterator[Session]:
    """A session per request: committed when the handler returns, rolled back on error."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


#: Documents ``Authorization: Bearer <token>`` in OpenAPI. It never refuses a request
#: itself: :func:`registry.auth.parse_bearer` reads the raw header, so a malformed one
#: still gets our 401 and an absent one means anonymous.
bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="lrg_<43 url-safe characters>",
    description="An API token (`loreg token create`). Optional: anonymous callers may "
    "read public namespaces.",
    auto_error=False,
)


def get_principal(
    ctx: Annotated[Context, Depends(get_context)],
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    """The caller, from ``Authorization: Bearer``; anonymous without the header.

    A checked token is trusted for ``LOREG_TOKEN_CACHE_S`` seconds in this process.
    """
    return principal_of(ctx, parse_bearer(request.headers.get("authorization")))


def base_url(request: Request) -> str:
    """The externally visible base URL of this request (for absolute links)."""
    return str(request.base_url).rstrip("/")


def page_request(
    ctx: Annotated[Context, Depends(get_context)],
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"rows per page, 1 to {MAX_LIMIT}")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=2048, description="the next_cursor of the previous page"),
    ] = None,
) -> PageRequest:
    """``limit`` and ``cursor`` of a list request, with the key that signs cursors."""
    return PageRequest(limit=limit, cursor=cursor or None, secret=ctx.settings.secret_key)


def only_params(*names: str) -> Callable[[Request], None]:
    """A dependency refusing (422, naming it) a query parameter not in ``names``: a
    misspelt filter must not silently list everything."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise InvalidRequest(
                f"unknown query parameter {', '.join(map(repr, unknown))}: "
                f"this list takes {', '.join(sorted(allowed))}"
            )

    return check


ContextDep = Annotated[Context, Depends(get_context)]
# scope="function": commit before the response is sent (the default for yield
# dependencies ends them after the response, so a client could read stale data).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
BaseUrlDep = Annotated[str, Depends(base_url)]
PageDep = Annotated[PageRequest, Depends(page_request)]
