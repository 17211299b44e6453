"""The FastAPI application: routes, error rendering, request size limits.

Outages of a dependency answer 503 with ``Retry-After``: ``database_unavailable``
(a database error that means the database is down, see
:func:`registry.db.database_unavailable`), ``store_unavailable`` (raised by the object
stores) and ``broker_unavailable``. An unexpected error answers 500 JSON and leaves the
keep-alive connection open (:class:`KeepAliveOnError`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import registry
from loreg.errors import InvalidRefError
from registry.api.error_render import (
    error_json,
    internal_error,
    typed_error_response,
)
from registry.api.fast_resolve import ResolveFastPath
from registry.api.hub_errors import HUB_PREFIX, hub_error_response, is_hub_request
from registry.api.routes import (
    admin,
    audit,
    base_models,
    cards,
    catalog,
    hub_read,
    hub_write,
    jobs,
    lifecycle,
    lineage,
    mirrors,
    presets,
    search,
    uploads,
)
from registry.errors import RegistryError
from registry.schemas import ERROR_RESPONSES
from registry.services.context import Context
from registry.settings import Settings
from registry.web import pages
from registry.web.errors import as_page
from registry.web.static_files import STATIC_DIR, StaticAssets

log = logging.getLogger("loreg.registry")

_BLOB_UPLOAD = re.compile(r"^/v1/uploads/[^/]+/blobs/[^/]+$")
_HUB_LFS_PUT = re.compile(r"^/hf/[^/]+/[^/]+\.git/info/lfs/objects/upload/[^/]+/[^/]+$")
_HUB_COMMIT = re.compile(r"^/hf/api/models/[^/]+/[^/]+/commit/[^/]+$")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


class KeepAliveOnError:
    """Outermost middleware: an unexpected error answers 500 JSON and keeps the connection.

    Starlette's ServerErrorMiddleware renders the 500 and then re-raises, which makes
    the server close the keep-alive connection (the client's next request on it fails).
    Here the error is logged and swallowed once a complete answer was sent, and a 500
    is rendered if none was started. Only an error after a response began streaming
    still propagates: that connection cannot be saved.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started and not complete:
                raise
            if not started:
                log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
                await internal_error(exc)(scope, receive, send)


class RegistryApp(FastAPI):
    """FastAPI with :class:`KeepAliveOnError` outside Starlette's own middleware stack,
    and the resolve fast path (:mod:`registry.api.fast_resolve`) just inside it."""

    def build_middleware_stack(self) -> ASGIApp:
        """The usual stack behind the resolve fast path, wrapped so that a 500 does not
        close the connection."""
        stack = super().build_middleware_stack()
        return KeepAliveOnError(ResolveFastPath(stack, self.state.ctx))


class BodySizeLimit:
    """Refuse request bodies over a limit with 413, by Content-Length or while streaming.

    Blob uploads (``PUT /v1/uploads/{id}/blobs/{sha}`` and the Hub's LFS PUT) get the
    file-size limit; a Hub commit, whose body carries a file base64-encoded, the
    limit of one such file (:func:`hub_commit_limit`); every other request the
    JSON-body limit.
    """

    def __init__(self, app: ASGIApp, json_limit: int, file_limit: int):
        self.app = app
        self.json_limit = json_limit
        self.file_limit = file_limit
        self.commit_limit = hub_commit_limit(json_limit, file_limit)

    def limit_of(self, method: str, path: str) -> int:
        """The body limit of a request."""
        if method == "PUT" and (_BLOB_UPLOAD.match(path) or _HUB_LFS_PUT.match(path)):
            return self.file_limit
        if method == "POST" and _HUB_COMMIT.match(path):
            return self.commit_limit
        return self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope["method"], scope["path"])
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                message = f"request body is {int(value)} bytes; the limit is {limit}"
                await _too_large(scope, message)(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                message = f"request body exceeds the limit of {limit} bytes"
                await _too_large(scope, message)(scope, receive, send)


def _too_large(scope: Scope, message: str) -> JSONResponse:
    """The 413 answer, in the Hub's error form for a Hub call."""
    if scope["path"].startswith(HUB_PREFIX):
        return hub_error_response(413, message)
    return error_json(413, "payload_too_large", message)


def hub_commit_limit(json_limit: int, file_limit: int) -> int:
    """The body limit of a Hub commit: one file of the file-size limit, base64-encoded
    (4 bytes per 3), plus a JSON body's worth of other lines.

    The stock client puts at most ~100 MiB of file content in one commit, but a
    single file may be larger; bigger commits are refused with 413. Each decoded
    file is held to the file-size limit again by the commit's parser.
    """
    return (file_limit + 2) // 3 * 4 + json_limit


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in; an HTTPException, which FastAPI's body reader
    passes on (any other error there becomes its generic 400), rendered as a 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


def _contract_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Adjust FastAPI's generated schema to the real contract (in place).

    The bearer token is optional (``{}`` = anonymous is accepted; scopes are checked
    per action), and any 422 still showing FastAPI's ``HTTPValidationError`` gets
    our error shape, as the validation handler below renders it.
    """
    error_422 = ERROR_RESPONSES[422]
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            security = operation.get("security")
            if security and {} not in security:
                security.append({})
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                responses["422"] = {
                    "description": error_422["description"],
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    },
                }
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def create_app(settings: Settings | None = None, context: Context | None = None) -> FastAPI:
    """Build the API app for the given settings (or a prepared context)."""
    ctx = context or Context.from_settings(settings or Settings.from_env(), create_bucket=True)
    app = RegistryApp(
        title="loreg",
        version=registry.__version__,
        description="Registry and artifact store for LoRA adapters. See docs/http-api.md.",
    )
    app.state.ctx = ctx
    for module in (
        catalog,
        uploads,
        base_models,
        jobs,
        mirrors,
        lineage,
        cards,
        lifecycle,
        search,
        admin,
        audit,
        presets,
        hub_write,
        hub_read,
    ):
        app.include_router(module.router)
    app.include_router(pages.router)
    app.mount("/static", StaticAssets(directory=STATIC_DIR), name="static")
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _contract_openapi(generate_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RegistryError)
    @app.exception_handler(sa.exc.SQLAlchemyError)
    @app.exception_handler(InvalidRefError)
    async def _typed_error(request: Request, exc: Exception) -> Response:
        response = typed_error_response(exc, ctx, request)
        if response is None:
            return await _internal_error(request, exc)
        return as_page(request, response)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {err.get('msg')}")
        response = error_json(
            422,
            "invalid_request",
            "invalid request: " + "; ".join(problems),
            details=[
                {"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()[:50]
            ],
            request=request,
        )
        return as_page(request, response)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and is_hub_request(request):
            message = (
                f"{request.method} {request.url.path}: this Hub API call is not served by "
                "loreg (docs/hub-protocol.md lists the calls it serves)"
            )
        return as_page(request, error_json(exc.status_code, code, message, request=request))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return internal_error(exc)

    app.add_middleware(
        BodySizeLimit,
        json_limit=ctx.settings.max_json_body_bytes,
        file_limit=ctx.settings.max_file_bytes,
    )
    return app
