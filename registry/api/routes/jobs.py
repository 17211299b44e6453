"""Job routes: submit, get, list, cancel, logs."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import Session

from loreg.vocabulary import JobStatus, JobType
from registry.api.deps import ContextDep, PageDep, PrincipalDep, SessionDep, StrictQuery
from registry.schemas import JobLog, JobView, Page, error_responses
from registry.services import jobs

router = APIRouter(prefix="/v1", tags=["jobs"])
log = logging.getLogger("loreg.jobs")


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobView,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
def submit_job(body: jobs.JobRequest, principal: PrincipalDep, ctx: ContextDep) -> dict[str, Any]:
    """Validate and record a job, then hand it to a worker; answers 202 with the job."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        job = jobs.submit_job(session, principal, body)
        session.commit()
        view = jobs.job_view(job)
    try:
        ctx.dispatcher.enqueue(job.id, job.queue)
    except Exception as exc:  # noqa: BLE001 - the reconciler re-enqueues queued jobs
        log.warning("could not enqueue job %s now (%s); the reconciler will retry", job.id, exc)
    return view


@router.get(
    "/jobs",
    response_model=Page[JobView],
    dependencies=[StrictQuery],
    responses=error_responses(400, 401, 422),
)
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    status: JobStatus | None = None,
    type: JobType | None = None,  # noqa: A002 - the API's field name
    namespace: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Jobs visible to the caller, newest first, a page at a time."""
    return jobs.list_jobs(
        session, principal, page, status=status, job_type=type, namespace=namespace
    ).as_dict()


@router.get("/jobs/{job_id}", response_model=JobView, responses=error_responses(401, 404, 422))
def get_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Status, progress, error, attempts and result of a job."""
    return jobs.job_view(jobs.get_job(session, principal, job_id))


@router.get("/jobs/{job_id}/logs", response_model=JobLog, responses=error_responses(401, 404, 422))
def job_logs(job_id: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """The tail of the job's log."""
    job = jobs.get_job(session, principal, job_id)
    return {"id": job.id, "status": job.status, "log": job.log_tail or ""}


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobView,
    responses=error_responses(401, 403, 404, 409, 422),
)
def cancel_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """Cancel a queued job, or ask a running one to stop."""
    return jobs.job_view(jobs.cancel_job(session, principal, job_id))
