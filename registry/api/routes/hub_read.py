"""Hub read routes under ``/hf``: what ``huggingface_hub`` calls to read a model repo.

The shapes are the Hub's, not loreg's (docs/hub-protocol.md), so these routes stay
out of loreg's OpenAPI document; the stock client is their contract test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, unquote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from registry.api.deps import BaseUrlDep, ContextDep, PrincipalDep, SessionDep
from registry.errors import FilesMissing
from registry.services.hub import read
from registry.services.hub.errors import HubBadRequest
from registry.services.hub.read import HubFile
from registry.services.hub.revisions import HubRevision
from registry.storage.base import blob_key
from registry.validation.json_values import loads_bounded

router = APIRouter(prefix="/hf", tags=["hub"], include_in_schema=False)
_REPO = "/api/models/{namespace}/{name}"


@router.get(_REPO)
def model_info(
    namespace: str, name: str, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Repo info of ``main`` (``HfApi.model_info`` / ``repo_info``)."""
    return read.repo_info(session, principal, namespace, name, None)


@router.get(_REPO + "/revision/{revision:path}")
def model_info_at(
    namespace: str, name: str, revision: str, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Repo info at a revision."""
    return read.repo_info(session, principal, namespace, name, revision)


def sent_revision(request: Request, offset: int, revision: str, path: str) -> tuple[str, str]:
    """The revision and path as the client sent them, when the revision holds a ``/``.

    The client percent-encodes the whole revision (``refs%2Fheads%2Fprod``), but routes
    match the decoded path, so ``.../refs%2Fheads%2Fprod/x`` arrives as revision
    ``refs`` and path ``heads/prod/x``. The raw path's segment ``offset`` places after
    ``hf`` tells them apart; anything that does not line up is left as routed.
    """
    raw = request.scope.get("raw_path") or b""
    segments = raw.decode("latin-1").split("/")
    if "hf" not in segments:
        return revision, path
    index = segments.index("hf") + offset
    if index >= len(segments):
        return revision, path
    sent = unquote(segments[index]).split("/")
    rest = path.split("/")
    if len(sent) == 1 or sent[0] != revision or rest[: len(sent) - 1] != sent[1:]:
        return revision, path
    return "/".join(sent), "/".join(rest[len(sent) - 1 :])


#: Where the revision is in the raw path, counted in segments from ``hf``.
_TREE_OFFSET = 6  # hf/api/models/{namespace}/{name}/tree/{revision}
_RESOLVE_OFFSET = 4  # hf/{namespace}/{name}/resolve/{revision}


@router.get(_REPO + "/tree/{revision}")
@router.get(_REPO + "/tree/{revision}/{path:path}")
def list_tree(
    namespace: str,
    name: str,
    revision: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    path: str = "",
    recursive: bool = False,
    expand: bool = False,
) -> list[dict[str, Any]]:
    """Entries under a folder of a revision (``list_repo_tree`` / ``list_repo_files``)."""
    revision, path = sent_revision(request, _TREE_OFFSET, revision, path)
    return read.tree(session, principal, namespace, name, revision, path, recursive, expand)


@dataclass(frozen=True)
class PathsQuery:
    """What a paths-info body asks for."""

    paths: list[str]
    expand: bool = False


_TRUE_WORDS = frozenset({"true", "1"})


async def paths_query(request: Request) -> PathsQuery:
    """The ``paths`` (and ``expand``) of a paths-info body: a form (``huggingface_hub`` posts
    one) or a JSON object ``{"paths": [...]}`` (``@huggingface/hub`` posts that); 400 for a
    bad JSON body.
    """
    body = await request.body()
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        paths = fields.get("paths", []) + fields.get("paths[]", [])
        expand = any(v.lower() in _TRUE_WORDS for v in fields.get("expand", []))
        return PathsQuery(paths, expand)
    try:
        data = loads_bounded(body)
    except ValueError as exc:
        raise HubBadRequest(f"the paths-info body is not valid JSON ({exc})") from None
    named = data.get("paths") if isinstance(data, dict) else None
    if isinstance(named, str):
        named = [named]
    if not isinstance(named, list) or not all(isinstance(p, str) for p in named):
        raise HubBadRequest('the paths-info JSON body must be {"paths": ["<path>", ...]}')
    return PathsQuery(named, data.get("expand") is True)


@router.post(_REPO + "/paths-info/{revision:path}")
def paths_info(
    namespace: str,
    name: str,
    revision: str,
    session: SessionDep,
    principal: PrincipalDep,
    query: Annotated[PathsQuery, Depends(paths_query)],
) -> list[dict[str, Any]]:
    """Entries of the named paths that exist at a revision (``get_paths_info``)."""
    return read.paths_info(session, principal, namespace, name, revision, query.paths, query.expand)


@router.get(_REPO + "/refs")
def list_refs(
    namespace: str,
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    include_prs: bool = False,
) -> dict[str, Any]:
    """Branches (``main`` and aliases) and tags (version labels) (``list_repo_refs``)."""
    return read.refs(session, principal, namespace, name, with_prs=include_prs)


@router.get(_REPO + "/commits/{revision:path}")
def list_commits(
    namespace: str,
    name: str,
    revision: str,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    base_url: BaseUrlDep,
    p: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[dict[str, Any]]:
    """Versions as commits, newest first, paged by ``Link`` (``list_repo_commits``).

    The next page's URL is on the public URL when one is set (behind a proxy the
    request's own host is an internal one the client cannot reach).
    """
    items, more = read.commits(session, principal, namespace, name, revision, p)
    if more:
        base = (ctx.settings.public_url or base_url).rstrip("/")
        path = f"/hf/api/models/{namespace}/{name}/commits/{quote(revision, safe='')}"
        response.headers["Link"] = f'<{base}{path}?p={p + 1}>; rel="next"'
    return items


class LocalFileResponse(FileResponse):
    """A file from the local store; a ``Range`` in a unit other than ``bytes`` is ignored.

    RFC 9110 §14.2: a server MUST ignore a range unit it does not understand (and send
    the whole file); Starlette would answer 400.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the file, with a foreign-unit ``Range`` header dropped first."""
        value = Headers(scope=scope).get("range")
        if value is not None and value.split("=", 1)[0].strip().lower() != "bytes":
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
            scope = {**scope, "headers": kept}
        await super().__call__(scope, receive, send)


def _file_headers(rev: HubRevision, f: HubFile) -> dict[str, str]:
    etag = f'"{f.sha256}"'
    return {
        "X-Repo-Commit": rev.commit,
        "ETag": etag,
        "X-Linked-Etag": etag,
        "X-Linked-Size": str(f.size),
        "Accept-Ranges": "bytes",
    }


@router.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
def resolve_file(
    namespace: str,
    name: str,
    revision: str,
    path: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> Response:
    """A file of a revision: a redirect to a presigned URL (S3) or the bytes (local store).

    Answers carry the headers ``hf_hub_download`` reads (``X-Repo-Commit``, ``ETag``,
    ``X-Linked-Etag``, ``X-Linked-Size``) on the redirect itself, since the client
    does not follow a cross-origin redirect for its metadata. Local files honour
    ``Range`` so an interrupted download resumes.
    """
    revision, path = sent_revision(request, _RESOLVE_OFFSET, revision, path)
    rev, f = read.file_at(session, principal, namespace, name, revision, path)
    headers = _file_headers(rev, f)
    key = blob_key(f.sha256)
    filename = f.path.rsplit("/", 1)[-1]
    url = ctx.store.presign_get(key, expires_in=ctx.settings.presign_expiry_s, filename=filename)
    if url:
        return Response(status_code=302, headers={**headers, "Location": url})
    local_path = getattr(ctx.store, "path_of", None)
    if local_path is not None:
        if ctx.store.stat(key) is None:  # gone since fsck last looked
            raise FilesMissing(
                f"{rev.repo_id}:v{rev.version.number}: the bytes of '{f.path}' are missing "
                "from the store; an admin can restore them by pushing the same files",
                details={"missing": [f.path]},
            )
        return LocalFileResponse(
            local_path(key), headers=headers, media_type="application/octet-stream"
        )
    headers["Accept-Ranges"] = "none"
    return StreamingResponse(
        ctx.store.open(key),
        media_type="application/octet-stream",
        headers={**headers, "Content-Length": str(f.size)},
    )
