"""Rendering errors as JSON answers, shared by the app's exception handlers and the
resolve fast path (:mod:`registry.api.fast_resolve`).

Every error is ``{"error": {"code": ..., "message": ..., "details"?: ...}}`` (the Hub's
``{"error": message}`` form under ``/hf``); a 503 carries ``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import JSONResponse

from loreg.errors import InvalidRefError
from registry.api.hub_errors import hub_error_response, is_hub_request
from registry.db import database_unavailable
from registry.errors import RegistryError, ServiceUnavailable
from registry.services.context import Context

log = logging.getLogger("loreg.registry")


def error_json(
    status: int, code: str, message: str, details: Any = None, request: Request | None = None
) -> JSONResponse:
    """An error answer from its parts (the Hub's form for a Hub-protocol request)."""
    if request is not None and is_hub_request(request):
        return hub_error_response(status, message)
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def error_response(
    exc: RegistryError, retry_after: int | None = None, request: Request | None = None
) -> JSONResponse:
    """The JSON answer of a typed error; a 503 carries ``Retry-After`` (seconds).

    ``retry_after`` (the server's LOREG_RETRY_AFTER) overrides the error's own hint.
    A Hub-protocol request gets the Hub's error form (registry.api.hub_errors).
    """
    headers = None
    if isinstance(exc, ServiceUnavailable):
        headers = {"Retry-After": str(retry_after or exc.retry_after)}
    if request is not None and is_hub_request(request):
        return hub_error_response(exc.status, exc.message, exc=exc, headers=headers)
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


def internal_error(exc: BaseException) -> JSONResponse:
    """The 500 answer of an unexpected error (its type only; details go to the log)."""
    return error_json(500, "internal", f"internal error ({type(exc).__name__}); see server log")


def typed_error_response(exc: BaseException, ctx: Context, request: Request) -> JSONResponse | None:
    """The answer of a typed error, an invalid ref or a database error (503 for an
    outage, logged); None for anything else (a bug: the caller renders a 500)."""
    where = f"{request.method} {request.url.path}"
    if isinstance(exc, RegistryError):
        if isinstance(exc, ServiceUnavailable):
            log.warning("%s: %s", where, exc.message)
        return error_response(exc, ctx.settings.retry_after_s, request)
    if isinstance(exc, InvalidRefError):
        return error_json(422, "invalid_ref", str(exc), request=request)
    if isinstance(exc, sa.exc.SQLAlchemyError):
        outage = database_unavailable(exc, ctx.engine.url, retry_after=ctx.settings.retry_after_s)
        if outage is None:
            return None
        log.warning("%s: %s", where, outage.message)
        return error_response(outage, ctx.settings.retry_after_s, request)
    return None
