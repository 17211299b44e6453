"""Publish routes: create an upload, send blobs, complete blobs, commit."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from registry.api.blob_body import received_blob
from registry.api.deps import BaseUrlDep, ContextDep, PrincipalDep, SessionDep
from registry.errors import InvalidRequest
from registry.schemas import (
    BlobStored,
    CommitResult,
    CompleteBlobRequest,
    UploadCreated,
    UploadRequest,
    error_responses,
)
from registry.services import publish

router = APIRouter(prefix="/v1", tags=["publish"])
_SHA = re.compile(r"^[0-9a-f]{64}$")


def _check_sha(sha256: str) -> str:
    if not _SHA.match(sha256):
        raise InvalidRequest(f"'{sha256}' is not a lowercase hex sha256")
    return sha256


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadCreated,
    response_model_exclude_unset=True,  # a present blob has no "upload" key
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def create_upload(
    body: UploadRequest,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    base: BaseUrlDep,
) -> dict[str, Any]:
    """Phase 1: declare the files; learn which blobs to send and how."""
    return publish.create_upload(session, ctx, principal, body, base)


@router.post(
    "/uploads/{upload_id}/blobs/{sha256}/complete",
    response_model=BlobStored,
    responses=error_responses(400, 401, 403, 404, 409, 410, 413, 422),
)
def complete_blob(
    upload_id: str,
    sha256: str,
    body: CompleteBlobRequest,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Phase 2 (S3): verify a blob sent through presigned URLs and store it."""
    parts = [(p.part_number, p.etag) for p in body.parts] if body.parts else None
    return publish.complete_blob(session, ctx, principal, upload_id, _check_sha(sha256), parts)


@router.put(
    "/uploads/{upload_id}/blobs/{sha256}",
    response_model=BlobStored,
    responses=error_responses(401, 403, 404, 410, 413, 422),
)
async def upload_blob(
    upload_id: str, sha256: str, request: Request, principal: PrincipalDep, ctx: ContextDep
) -> dict[str, Any]:
    """Phase 2 (API upload): stream the bytes here; verified and stored in this call."""
    sha = _check_sha(sha256)

    def lookup() -> tuple[int, bool]:
        with Session(ctx.engine) as session:
            upload = publish.open_upload(session, principal, upload_id)
            return publish.declared_size(upload, sha), not publish.needs_bytes(session, upload, sha)

    size, present = await run_in_threadpool(lookup)
    if present:
        return {"sha256": sha, "size": size, "present": True}
    async with received_blob(request, ctx.settings.data_dir / "tmp", sha, size) as tmp_path:

        def store() -> dict[str, Any]:
            with open(tmp_path, "rb") as f:
                return publish.store_received_blob(ctx, upload_id, sha, size, f)

        return await run_in_threadpool(store)


@router.post(
    "/uploads/{upload_id}/commit",
    status_code=201,
    response_model=CommitResult,
    responses={
        200: {
            "model": CommitResult,
            "description": "an identical version already existed (created: false)",
        },
        **error_responses(401, 403, 404, 409, 410, 413, 422),
    },
)
def commit_upload(
    upload_id: str, principal: PrincipalDep, ctx: ContextDep, base: BaseUrlDep
) -> dict[str, Any] | JSONResponse:
    """Phase 3: validate and write the version atomically (200 if it already existed)."""
    created, view = publish.commit_upload(ctx, principal, upload_id, base)
    body = {"created": created, "resolved": view}
    # the 200 is rendered as it always was, by JSONResponse (the model documents it)
    return body if created else JSONResponse(body, status_code=200)
