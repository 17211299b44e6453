"""Job list and job pages (live while a job runs), and cancelling a job from its page."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from loreg.errors import InvalidRefError
from loreg.refs import parse_ref
from loreg.vocabulary import TERMINAL_STATUSES, JobStatus, JobType
from registry.api.deps import ContextDep, SessionDep
from registry.errors import InvalidRequest
from registry.models import Job
from registry.services import jobs as job_service
from registry.web.pages.common import WEB_TAG, VisitorDep, page_of
from registry.web.security import CSRF_FIELD, check_csrf
from registry.web.templating import render

router = APIRouter(tags=[WEB_TAG])


def _choice(name: str, value: str | None, allowed: list[str]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def live_view(job: Job) -> dict[str, Any]:
    """What the page's script updates while a job runs: part of its view, and the log tail."""
    view = job_service.job_view(job)
    keys = (
        "id",
        "status",
        "progress",
        "message",
        "error",
        "cancel_requested",
        "attempts",
        "started_at",
        "finished_at",
    )
    return {key: view[key] for key in keys} | {
        "done": job.status in TERMINAL_STATUSES,
        "log_tail": job.log_tail or "",
        "result_ref": result_ref(view),
        "result_href": version_href(result_ref(view)),
    }


def result_ref(view: dict[str, Any]) -> str | None:
    """The ref of the version a job produced (from its result), None if there is none."""
    result = view.get("result")
    if not isinstance(result, dict):
        return None
    ref = result.get("ref")
    return ref if isinstance(ref, str) else None


def version_href(ref_text: str | None) -> str | None:
    """The page of a version named by a canonical ref (``ns/name-vN``), else None."""
    if not ref_text:
        return None
    try:
        ref = parse_ref(ref_text)
    except InvalidRefError:
        return None
    if ref.namespace is None or ref.version is None:
        return None
    adapter = f"/adapters/{quote(ref.namespace, safe='')}/{quote(ref.name, safe='')}"
    return f"{adapter}/versions/{ref.version}"


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, ctx: ContextDep, session: SessionDep, visitor: VisitorDep) -> Any:
    """Jobs the visitor may see, newest first, filtered by status and type."""
    status = _choice("status", request.query_params.get("status"), [s.value for s in JobStatus])
    job_type = _choice("type", request.query_params.get("type"), [t.value for t in JobType])
    found = job_service.list_jobs(
        session,
        visitor.principal,
        page_of(ctx, request.query_params.get("cursor")),
        status=status,
        job_type=job_type,
    )
    return render(
        request,
        visitor,
        "jobs.html",
        title="Jobs",
        jobs=found.items,
        next_cursor=found.next_cursor,
        params={"status": status or "", "type": job_type or ""},
        statuses=[s.value for s in JobStatus],
        types=[t.value for t in JobType],
        terminal=[s.value for s in TERMINAL_STATUSES],
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, session: SessionDep, visitor: VisitorDep) -> Any:
    """One job: parameters, inputs, progress, log tail, result; a cancel button for writers."""
    job = job_service.get_job(session, visitor.principal, job_id)
    view = job_service.job_view(job)
    return render(
        request,
        visitor,
        "job.html",
        title=f"Job {job.id}",
        job=view,
        result_ref=result_ref(view),
        result_href=version_href(result_ref(view)),
        log_tail=job.log_tail,
        done=job.status in TERMINAL_STATUSES,
        can_cancel=visitor.principal.can(job.namespace, "write")
        and job.status not in TERMINAL_STATUSES,
    )


@router.get("/jobs/{job_id}/live")
def job_live(job_id: str, session: SessionDep, visitor: VisitorDep) -> JSONResponse:
    """The job's status and progress as JSON, for the page's live updates."""
    job = job_service.get_job(session, visitor.principal, job_id)
    return JSONResponse(live_view(job), headers={"Cache-Control": "no-store"})


@router.post("/jobs/{job_id}/cancel")
def cancel_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    visitor: VisitorDep,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> RedirectResponse:
    """Cancel (or ask to stop) a job, then show its page again (303)."""
    check_csrf(request, csrf)
    job_service.cancel_job(session, visitor.principal, job_id)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
