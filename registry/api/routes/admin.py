"""Tokens, blob downloads (local store) and maintenance routes."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, StreamingResponse

from registry.api.deps import ContextDep, PrincipalDep, SessionDep
from registry.auth import require_scope
from registry.errors import NotFound
from registry.schemas import MAX_INT64, TokenRequest, error_responses
from registry.services import tokens, urls
from registry.services.gc import collect_garbage
from registry.services.repair import repair_stored_json
from registry.storage.base import blob_key

router = APIRouter(prefix="/v1", tags=["admin"])
_SHA = re.compile(r"^[0-9a-f]{64}$")


@router.post("/tokens", status_code=201, responses=error_responses(400, 401, 403, 404, 413, 422))
def create_token(body: TokenRequest, session: SessionDep, principal: PrincipalDep) -> dict:
    """Create an API token; the secret is returned once."""
    return tokens.create_token(session, principal, body)


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


@router.post("/admin/gc", responses=error_responses(401, 403))
def garbage_collect(principal: PrincipalDep, ctx: ContextDep) -> dict[str, Any]:
    """Remove expired uploads and unreferenced blobs past the grace period (admin)."""
    require_scope(principal, "*", False, "admin")
    return collect_garbage(ctx)


@router.post("/admin/repair-json", responses=error_responses(401, 403))
def repair_json(principal: PrincipalDep, ctx: ContextDep) -> dict[str, Any]:
    """Rewrite stored configs, metadata and lineage params nested past the bounds (admin)."""
    require_scope(principal, "*", False, "admin")
    return repair_stored_json(ctx)
