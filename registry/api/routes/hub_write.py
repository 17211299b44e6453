"""Hub write routes under ``/hf``: what ``huggingface_hub`` calls to publish to a model repo.

``create_repo``, ``validate-yaml``, preupload, the commit (an NDJSON body parsed as
it streams in), the LFS batch API with its upload, completion and verify URLs, and
the calls loreg refuses with a message (``create_branch``, Xet write tokens). Like
the read routes, they stay out of loreg's OpenAPI document (docs/hub-protocol.md).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from registry.api.blob_body import received_blob
from registry.api.deps import BaseUrlDep, ContextDep, PrincipalDep, SessionDep
from registry.api.hub_errors import header_text
from registry.auth import Principal
from registry.services.context import Context
from registry.services.hub import commits, lfs, preupload, repos
from registry.services.hub.access import (
    check_commit_revision,
    refuse_pull_request,
    writable_repo,
)
from registry.services.hub.errors import HubBadRequest
from registry.services.hub.ndjson import CommitBodyParser
from registry.services.publish import store_received_blob
from registry.validation.json_values import loads_bounded

router = APIRouter(prefix="/hf", tags=["hub"], include_in_schema=False)
_REPO = "/api/models/{namespace}/{name}"
_LFS = "/{namespace}/{name}.git/info/lfs/objects"
LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
Expires = Annotated[int, Query(ge=0, le=2**40)]
Signature = Annotated[str, Query(max_length=128)]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body (whatever its content type), or a 400 saying so."""
    try:
        body = loads_bounded(await request.body())
    except ValueError as exc:
        raise HubBadRequest(f"the request body must be a JSON object ({exc})") from None
    if not isinstance(body, dict):
        raise HubBadRequest("the request body must be a JSON object")
    return body


JsonBody = Annotated[dict[str, Any], Depends(json_body)]


def _base(ctx: Context, base: str) -> str:
    return (ctx.settings.public_url or base).rstrip("/")


@router.post("/api/repos/create")
def create_repo(
    body: JsonBody, session: SessionDep, principal: PrincipalDep, ctx: ContextDep, base: BaseUrlDep
) -> JSONResponse:
    """``HfApi.create_repo``: the adapter, with no version yet; 409 (with its URL) if it exists."""
    created = repos.create_repo(session, principal, body, _base(ctx, base))
    if not created.existed:
        return JSONResponse({"url": created.url})
    message = f"repository {created.url} already exists"
    return JSONResponse(
        {"error": message, "url": created.url},
        status_code=409,
        headers={"X-Error-Message": header_text(message)},
    )


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request) -> JSONResponse:
    """Model-card check before ``upload_folder``: always JSON, 400 with ``errors`` if invalid."""
    try:
        body = loads_bounded(await request.body())
    except ValueError:
        body = None
    problems = repos.validate_yaml(body if isinstance(body, dict) else {})
    if problems:
        return JSONResponse({"errors": problems}, status_code=400)
    return JSONResponse({})


@router.post(_REPO + "/branch/{branch:path}")
def create_branch(
    namespace: str, name: str, branch: str, session: SessionDep, principal: PrincipalDep
) -> None:
    """``HfApi.create_branch`` (``hf upload --revision NEW``): refused with what to do instead."""
    repos.create_branch(session, principal, namespace, name, branch)


@router.get(_REPO + "/xet-write-token/{revision:path}")
def xet_write_token(
    namespace: str, name: str, revision: str, session: SessionDep, principal: PrincipalDep
) -> None:
    """Xet storage is not served: a client that reached for it is told how to avoid it."""
    writable_repo(session, principal, namespace, name)
    raise HubBadRequest(
        "loreg does not serve Xet storage: upload with the default client (files are "
        "answered 'regular'), or set HF_HUB_DISABLE_XET=1 before asking for 'lfs' uploads"
    )


@router.post(_REPO + "/preupload/{revision}")
def preupload_files(
    namespace: str,
    name: str,
    revision: str,
    request: Request,
    body: JsonBody,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """How each file of a coming commit travels (``regular``), or ``loreg push``'s refusal."""
    refuse_pull_request(request.query_params.get("create_pr"))
    mode = request.headers.get(preupload.UPLOAD_MODE_HEADER)
    return preupload.preupload(session, ctx, principal, namespace, name, revision, body, mode)


def _check_commit_target(
    ctx: Context, principal: Principal, namespace: str, name: str, revision: str
) -> None:
    """Refuse a commit before its body is read: an unwritable repo, a revision not main."""
    with Session(ctx.engine) as session:
        writable_repo(session, principal, namespace, name)
    check_commit_revision(revision)


@router.post(_REPO + "/commit/{revision}")
async def create_commit(
    namespace: str,
    name: str,
    revision: str,
    request: Request,
    principal: PrincipalDep,
    ctx: ContextDep,
    base: BaseUrlDep,
) -> dict[str, Any]:
    """``create_commit`` / ``upload_file`` / ``upload_folder``: the next version, as the caller.

    The NDJSON body is parsed as it streams in; file contents are decoded into temp
    files, never held in memory. Identical content answers the existing version's commit.
    """
    refuse_pull_request(request.query_params.get("create_pr"))
    await run_in_threadpool(_check_commit_target, ctx, principal, namespace, name, revision)
    tmp_root = ctx.settings.data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=tmp_root, prefix="hub-commit-"))
    parser = CommitBodyParser(
        tmp,
        max_line_bytes=ctx.settings.max_json_body_bytes,
        max_file_bytes=ctx.settings.max_file_bytes,
        max_ops=2 * ctx.settings.max_files_per_version,
    )
    try:
        try:
            async for chunk in request.stream():
                parser.feed(chunk)
            parser.close()
        finally:
            parser.discard()
        _, oid = await run_in_threadpool(
            commits.commit, ctx, principal, namespace, name, revision, parser.ops, base
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    url = f"{_base(ctx, base)}/hf/{namespace}/{name}/commit/{oid}"
    return {"commitUrl": url, "commitOid": oid}


@router.post(_LFS + "/batch")
def lfs_batch(
    namespace: str,
    name: str,
    body: JsonBody,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    base: BaseUrlDep,
) -> JSONResponse:
    """The LFS batch API: per object, no actions (stored, yours to reuse) or where to send it."""
    answer = lfs.batch(session, ctx, principal, namespace, name, body, base)
    return JSONResponse(answer, media_type=LFS_MEDIA_TYPE)


@router.post(_LFS + "/verify/{upload_id}")
def lfs_verify(
    namespace: str,
    name: str,
    upload_id: str,
    body: JsonBody,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> JSONResponse:
    """The ``verify`` action: size and sha256 checked, the blob promoted into the store."""
    answer = lfs.verify(session, ctx, principal, namespace, name, upload_id, body)
    return JSONResponse(answer, media_type=LFS_MEDIA_TYPE)


@router.post(_LFS + "/complete/{upload_id}/{oid}")
def lfs_complete_multipart(
    namespace: str,
    name: str,
    upload_id: str,
    oid: str,
    body: JsonBody,
    session: SessionDep,
    ctx: ContextDep,
    expires: Expires,
    signature: Signature,
) -> JSONResponse:
    """The multipart ``upload`` href (S3): assemble the parts; its signature authorizes it."""
    answer = lfs.complete_multipart(session, ctx, upload_id, oid, (expires, signature), body)
    return JSONResponse(answer, media_type=LFS_MEDIA_TYPE)


@router.put(_LFS + "/upload/{upload_id}/{oid}")
async def lfs_put(
    namespace: str,
    name: str,
    upload_id: str,
    oid: str,
    request: Request,
    ctx: ContextDep,
    expires: Expires,
    signature: Signature,
) -> dict[str, Any]:
    """The basic ``upload`` href of the local store: the bytes, checked and stored at once.

    The client sends no token here; the URL's signature authorizes the PUT.
    """

    def lookup() -> tuple[int, bool]:
        with Session(ctx.engine) as session:
            return lfs.open_signed_put(session, ctx, upload_id, oid, (expires, signature))

    size, present = await run_in_threadpool(lookup)
    if present:
        return {"oid": oid, "size": size}
    async with received_blob(request, ctx.settings.data_dir / "tmp", oid, size) as tmp_path:

        def store() -> None:
            with open(tmp_path, "rb") as f:
                store_received_blob(ctx, upload_id, oid, size, f)

        await run_in_threadpool(store)
    return {"oid": oid, "size": size}
