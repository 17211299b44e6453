"""``GET /v1/resolve/{ref}`` answered at the ASGI layer, before FastAPI's routing.

Resolve is the call every pull, load and serving engine makes. FastAPI's middleware,
routing and dependency machinery cost more per request than the resolve itself once
its one statement runs on the event loop (docs/benchmarks.md, "API hot path"), so a
plain GET of a resolve URL is handled here: the same service call
(:mod:`registry.services.resolve`), the same answer bytes, the same error answers
(:mod:`registry.api.error_render`). The FastAPI route stays: it documents the call in
OpenAPI and serves what this layer passes on (other methods, a request with a body).
An unexpected error propagates to the outer :class:`~registry.app.KeepAliveOnError`,
which logs it and answers 500, as for every route.
"""

from __future__ import annotations

import functools

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loreg.notices import HEADER as WARNING_HEADER
from registry.api.deps import base_url
from registry.api.error_render import typed_error_response
from registry.auth import parse_bearer
from registry.services import resolve
from registry.services.context import Context

PREFIX = "/v1/resolve/"


def taken_ref(scope: Scope) -> str | None:
    """The ref of a GET of ``/v1/resolve/<ref>`` without a request body, else None.

    The path is the one routing sees: without the ``root_path`` a proxy mounts us at.
    """
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(PREFIX) or len(path) == len(PREFIX):
        return None
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return None
    return path[len(PREFIX) :]


async def resolve_answer(ctx: Context, request: Request, ref: str) -> Response:
    """The resolve answer (or its error answer) for ``ref``, as the API route gives it."""
    return await _answer(ctx, request.scope, request.receive, ref)


async def _answer(ctx: Context, scope: Scope, receive: Receive, ref: str) -> Response:
    try:
        token = parse_bearer(_header(scope, b"authorization"))
        base = _base_url(scope)
        if ctx.async_lookup is not None:
            answer = await resolve.resolve_json_async(ctx, token, ref, base)
        else:
            answer = await run_in_threadpool(resolve.resolve_json, ctx, token, ref, base)
    except Exception as exc:
        response = typed_error_response(exc, ctx, Request(scope, receive))
        if response is None:
            raise
        return response
    ok = Response(answer.body, media_type="application/json")
    for value in answer.warnings:  # a yanked version, a deprecated adapter (loreg.notices)
        ok.headers.append(WARNING_HEADER, value)
    return ok


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (lowercase ``name``), decoded as Latin-1 the
    way Starlette's ``Headers`` does."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


@functools.lru_cache(maxsize=256)
def _base_url_of(scheme: str, host: str | None, server: tuple | None, root: str) -> str:
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "root_path": root,
        "path": "/",
        "query_string": b"",
        "headers": [] if host is None else [(b"host", host.encode("latin-1"))],
    }
    return base_url(Request(scope))


def _base_url(scope: Scope) -> str:
    """:func:`registry.api.deps.base_url` of the request, memoised on what it depends
    on (scheme, Host header, server address, root path)."""
    server = scope.get("server")
    return _base_url_of(
        scope.get("scheme", "http"),
        _header(scope, b"host"),
        tuple(server) if server is not None else None,
        scope.get("app_root_path", scope.get("root_path", "")),
    )


class ResolveFastPath:
    """ASGI middleware: resolve GETs here, everything else to the app."""

    def __init__(self, app: ASGIApp, ctx: Context):
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ref = taken_ref(scope)
        if ref is None:
            await self.app(scope, receive, send)
            return
        response = await _answer(self.ctx, scope, receive, ref)
        await response(scope, receive, send)
