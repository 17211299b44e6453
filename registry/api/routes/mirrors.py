"""Mirror routes: add, list, remove, and sync (submit ``mirror_import`` jobs)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from sqlmodel import Session

from registry.api.deps import ContextDep, PrincipalDep, SessionDep
from registry.models import Job, Mirror
from registry.schemas import MAX_INT64, MirrorRequest, MirrorSync, MirrorView, error_responses
from registry.services import jobs, mirrors
from registry.services.context import Context

router = APIRouter(prefix="/v1/mirrors", tags=["mirrors"])
log = logging.getLogger("loreg.mirrors")
MirrorId = Annotated[int, Path(ge=1, le=MAX_INT64)]


def _view(ctx: Context, mirror: Mirror) -> dict[str, Any]:
    return mirrors.mirror_view(mirror, ctx.settings.hub_url)


def _sync_answer(ctx: Context, mirror: Mirror, job: Job, submitted: bool) -> dict[str, Any]:
    return {"mirror": _view(ctx, mirror), "submitted": submitted, "job": jobs.job_view(job)}


def _enqueue(ctx: Context, answers: list[dict[str, Any]]) -> None:
    """Send the submitted jobs (after the commit; the reconciler re-sends a lost one)."""
    for answer in answers:
        if not answer["submitted"]:
            continue
        job = answer["job"]
        try:
            ctx.dispatcher.enqueue(job["id"], job["queue"])
        except Exception as exc:  # noqa: BLE001 - the reconciler re-enqueues queued jobs
            log.warning("could not enqueue job %s now (%s); the reconciler will retry", job, exc)


@router.post(
    "",
    status_code=201,
    response_model=MirrorView,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
def add_mirror(
    body: MirrorRequest, session: SessionDep, principal: PrincipalDep, ctx: ContextDep
) -> dict[str, Any]:
    """Keep an adapter in sync with an upstream Hub model repo (write scope on its namespace)."""
    return _view(ctx, mirrors.add_mirror(session, principal, body))


@router.get("", response_model=list[MirrorView], responses=error_responses(401, 422))
def list_mirrors(
    session: SessionDep, principal: PrincipalDep, ctx: ContextDep, namespace: str | None = None
) -> list[dict[str, Any]]:
    """Mirrors the caller may see, oldest first, with their last sync."""
    return [_view(ctx, m) for m in mirrors.list_mirrors(session, principal, namespace)]


@router.get("/{mirror_id}", response_model=MirrorView, responses=error_responses(401, 404, 422))
def get_mirror(
    mirror_id: MirrorId, session: SessionDep, principal: PrincipalDep, ctx: ContextDep
) -> dict[str, Any]:
    """One mirror and its last sync."""
    return _view(ctx, mirrors.get_mirror(session, principal, mirror_id))


@router.delete(
    "/{mirror_id}", response_model=MirrorView, responses=error_responses(401, 403, 404, 422)
)
def remove_mirror(
    mirror_id: MirrorId, session: SessionDep, principal: PrincipalDep, ctx: ContextDep
) -> dict[str, Any]:
    """Stop mirroring (the versions already mirrored stay); answers the removed mirror."""
    return _view(ctx, mirrors.remove_mirror(session, principal, mirror_id))


@router.post(
    "/sync",
    response_model=list[MirrorSync],
    responses=error_responses(401, 422),
)
def sync_due(principal: PrincipalDep, ctx: ContextDep) -> list[dict[str, Any]]:
    """Submit a sync job for every due scheduled mirror the caller may write."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        answers = []
        for mirror in mirrors.due_mirrors(session, principal):
            job, submitted = mirrors.sync_mirror(session, principal, mirror)
            answers.append(_sync_answer(ctx, mirror, job, submitted))
        session.commit()
    _enqueue(ctx, answers)
    return answers


@router.post(
    "/{mirror_id}/sync",
    response_model=MirrorSync,
    responses=error_responses(401, 403, 404, 422),
)
def sync_one(mirror_id: MirrorId, principal: PrincipalDep, ctx: ContextDep) -> dict[str, Any]:
    """Submit a sync job for one mirror now (or answer the one still in flight)."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        mirror = mirrors.get_mirror(session, principal, mirror_id, "write")
        job, submitted = mirrors.sync_mirror(session, principal, mirror)
        answer = _sync_answer(ctx, mirror, job, submitted)
        session.commit()
    _enqueue(ctx, [answer])
    return answer
