"""Health, tokens, blob downloads (local store) and maintenance routes."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from registry.api.deps import ContextDep, PageDep, PrincipalDep, SessionDep
from registry.auth import require_scope
from registry.errors import NotFound
from registry.schemas import (
    MAX_INT64,
    ErrorResponse,
    FsckReport,
    GcReport,
    Health,
    Liveness,
    RepairReport,
    TokenCreated,
    TokenPage,
    TokenRequest,
    TokenView,
    error_responses,
)
from registry.services import fsck, tokens, urls
from registry.services.gc import collect_garbage
from registry.services.health import health as health_report
from registry.services.repair import repair_stored_json
from registry.storage.base import blob_key

router = APIRouter(prefix="/v1", tags=["admin"])
_SHA = re.compile(r"^[0-9a-f]{64}$")


@router.get("/livez", response_model=Liveness)
async def livez() -> dict[str, str]:
    """Liveness: the process answers HTTP. Touches no dependency (``/v1/health`` does)."""
    return {"status": "ok"}


@router.get(
    "/health",
    response_model=Health,
    responses={
        **error_responses(),
        503: {
            "model": ErrorResponse,
            "description": "database_unavailable, store_unavailable, broker_unavailable (one "
            "dependency down) or service_unavailable (several); details is the health report",
        },
    },
)
def health(ctx: ContextDep) -> dict[str, Any] | JSONResponse:
    """Whether the database, the object store and the broker (if any) answer; 503 if not."""
    report = health_report(ctx)
    if report["status"] == "ok":
        return report
    down = {name: check for name, check in report["checks"].items() if check["status"] != "ok"}
    codes = {"database": "database_unavailable", "store": "store_unavailable"}
    codes["broker"] = "broker_unavailable"
    code = codes[next(iter(down))] if len(down) == 1 else "service_unavailable"
    message = "; ".join(f"{name}: {check['error']}" for name, check in down.items())
    body = {"error": {"code": code, "message": message, "details": Health(**report).model_dump()}}
    headers = {"Retry-After": str(ctx.settings.retry_after_s)}
    return JSONResponse(body, status_code=503, headers=headers)


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def create_token(
    body: TokenRequest, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Create an API token; the secret is returned once."""
    return tokens.create_token(session, principal, body)


@router.get("/tokens", response_model=TokenPage, responses=error_responses(400, 401, 422))
def list_tokens(session: SessionDep, principal: PrincipalDep, page: PageDep) -> dict[str, Any]:
    """Tokens newest first: all of them for an admin of ``*``, else only the caller's own."""
    return tokens.list_tokens(session, principal, page).as_dict()


@router.delete(
    "/tokens/{token_id}", response_model=TokenView, responses=error_responses(401, 404, 422)
)
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=MAX_INT64)], session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Revoke a token (admin of ``*``, or the token itself); refused at once everywhere.

    Revoking a revoked token answers it again (idempotent)."""
    return tokens.revoke_token(session, principal, token_id)


@router.get(
    "/blobs/{sha256}",
    response_model=None,
    response_class=FileResponse,
    responses={
        200: {
            "description": "the blob's bytes",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        **error_responses(404, 422),
    },
)
def download_blob(
    sha256: str,
    ctx: ContextDep,
    expires: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
    signature: str = "",
) -> FileResponse | StreamingResponse:
    """Bytes of a blob, for a signed URL handed out by resolve (local store)."""
    if not _SHA.match(sha256):
        raise NotFound("blob not found")
    urls.check_blob_signature(ctx, sha256, expires, signature)
    key = blob_key(sha256)
    info = ctx.store.stat(key)
    if info is None:
        raise NotFound(f"blob {sha256} not found")
    local_path = getattr(ctx.store, "path_of", None)
    if local_path is not None:
        return FileResponse(local_path(key), media_type="application/octet-stream")
    return StreamingResponse(
        ctx.store.open(key),
        media_type="application/octet-stream",
        headers={"Content-Length": str(info.size)},
    )


@router.post("/admin/gc", response_model=GcReport, responses=error_responses(401, 403))
def garbage_collect(principal: PrincipalDep, ctx: ContextDep) -> dict[str, Any]:
    """Remove expired uploads and unreferenced blobs past the grace period (admin)."""
    require_scope(principal, "*", False, "admin")
    return collect_garbage(ctx)


@router.post("/admin/fsck", response_model=FsckReport, responses=error_responses(401, 403, 422))
def fsck_store(
    principal: PrincipalDep, ctx: ContextDep, verify_hashes: bool = False
) -> dict[str, Any]:
    """Check that the store holds every blob the database lists (admin).

    Marks versions whose files are missing (they resolve 409 ``files_missing``)
    and unmarks those whose bytes are back; ``verify_hashes`` re-hashes every blob.
    """
    require_scope(principal, "*", False, "admin")
    return fsck.scrub(ctx, verify_hashes=verify_hashes)


@router.post("/admin/repair-json", response_model=RepairReport, responses=error_responses(401, 403))
def repair_json(principal: PrincipalDep, ctx: ContextDep) -> dict[str, Any]:
    """Rewrite stored configs, metadata and lineage params nested past the bounds (admin)."""
    require_scope(principal, "*", False, "admin")
    return repair_stored_json(ctx)
