"""The job state machine: every write that moves a job row, one conditional UPDATE each.

A job row is the source of truth (the broker only delivers ``run_job(job_id)``),
and several processes write it at once: the API (submit, cancel), any number of
workers (claim, heartbeat, finish, release) and a reconciler in every worker's
main process (stale and lost jobs). No process holds a lock between reading a
row and writing it; instead each write below is ONE ``UPDATE ... WHERE`` whose
guard restates the state it moves the job from. The database applies the guard
and the change atomically, so of two racing writers exactly one wins (the loser's
UPDATE matches no row), and every function says whether it won.

States are the words of :class:`loreg.vocabulary.JobStatus`; the terminal ones
(``succeeded``, ``failed``, ``cancelled``) are never left. The moves::

    (new row)                 submit            -> queued
    queued                    claim             -> running (attempt 1)
    running, heartbeat stale  claim             -> running (taken over: attempt + 1)
    running                   heartbeat         -> running (progress, log tail)
    running                   finish            -> succeeded | failed | cancelled
    running                   release           -> queued (transient error: retried)
    running, heartbeat stale  requeue_stale     -> queued (its worker died)
    queued                    mark_sent         -> queued (its message sent again)
    queued                    cancel_queued     -> cancelled
    queued / stale running    give_up           -> failed (attempts used up)
    queued / stale running    cancel_abandoned  -> cancelled (cancel was requested)
    any but terminal          request_cancel    -> same status, cancel_requested set

Transitions, their callers and their guards:

=================  ==========================  =====================================
function           called by                   guard (the UPDATE's WHERE)
=================  ==========================  =====================================
submit             API ``POST /v1/jobs``       a new row (an INSERT)
cancel_queued      API ``POST .../cancel``     ``queued``
request_cancel     API ``POST .../cancel``     not terminal
claim              a worker's ``run_job``      ``queued``, or ``running`` with a
                                               stale heartbeat; no cancel requested
give_up            a worker's ``run_job``      ``queued`` or stale ``running``, its
                                               attempts used up and unchanged
heartbeat          the runner's beat thread    ``running`` under the claim
finish             the runner (``run_job``)    ``running`` under the claim
release            the runner (``run_job``)    ``running`` under the claim
cancel_abandoned   the reconciler              cancel requested, ``queued`` or
                                               ``running`` with a stale heartbeat
requeue_stale      the reconciler              ``running`` with a stale heartbeat
mark_sent          the reconciler              ``queued``, not re-sent since read
=================  ==========================  =====================================

The reconciler finds its candidates with :func:`stale_running` and
:func:`unsent_queued` (plain reads; the guarded UPDATE decides).

A claim is ``(worker, attempt)`` (:class:`Claim`): ``claim`` sets ``worker`` and
increments ``attempts``, and every later write of that runner is guarded by both,
so a runner whose job was taken over (or ended elsewhere) writes nothing: its
heartbeat loses and it stops. The attempt tells apart two claims by a restarted
process that reused the same ``host:pid``.

Each function runs its statement in the caller's session and does not commit:
the caller commits (under Postgres the row stays locked until then, and a
concurrent writer's guard is evaluated against the committed row). Statements
skip the ORM's in-Python synchronisation (SQLite returns naive datetimes, which
the staleness tests cannot compare): a caller holding the row refreshes it.
Texts written to the row are cut to the column sizes (:func:`truncate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from loreg.vocabulary import TERMINAL_STATUSES, JobStatus
from registry.models import Job, utcnow


def _varchar_size(column: str) -> int:
    """The declared size of one of the job row's VARCHAR columns."""
    column_type = sa.inspect(Job).columns[column].type
    if isinstance(column_type, sa.TypeDecorator):  # SQLModel's AutoString wraps a String
        column_type = column_type.impl_instance
    assert isinstance(column_type, sa.String) and column_type.length is not None, (
        f"jobs.{column} is not a VARCHAR of a declared size"
    )
    return column_type.length


ERROR_MAX: int = _varchar_size("error")  # VARCHAR sizes of the job row
MESSAGE_MAX: int = _varchar_size("message")
TRUNCATED = "… (truncated)"
RETRY_PREFIX = "retrying after: "  # the error of a released job
_NO_SYNC = {"synchronize_session": False}


@dataclass(frozen=True)
class Claim:
    """One worker's hold on a running job: the job, the worker's name, the attempt number."""

    job_id: str
    worker: str
    attempt: int


def truncate(text: str | None, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` characters: the head is kept and the cut marked."""
    if text is None or len(text) <= limit:
        return text
    if limit <= len(TRUNCATED):
        return text[:limit]
    return text[: limit - len(TRUNCATED)] + TRUNCATED


# ------------------------------------------------------------------------ guards


def older_than(column: Any, before: datetime) -> Any:
    """``column`` is NULL or earlier than ``before`` (a stale heartbeat, an old send)."""
    return sa.or_(column.is_(None), column < before)


def _stale_running(stale_before: datetime) -> Any:
    """The job is ``running`` with a heartbeat older than ``stale_before`` (or none)."""
    return sa.and_(
        col(Job.status) == JobStatus.RUNNING, older_than(col(Job.heartbeat_at), stale_before)
    )


def _claimable(job_id: str, stale_before: datetime) -> Any:
    """The job is ``queued``, or ``running`` with a heartbeat older than ``stale_before``."""
    return sa.and_(
        col(Job.id) == job_id,
        sa.or_(col(Job.status) == JobStatus.QUEUED, _stale_running(stale_before)),
    )


def _held(claim: Claim) -> Any:
    """The job is still ``running`` under this claim (same worker, same attempt)."""
    return sa.and_(
        col(Job.id) == claim.job_id,
        col(Job.status) == JobStatus.RUNNING,
        col(Job.worker) == claim.worker,
        col(Job.attempts) == claim.attempt,
    )


def _update(session: Session, where: Any, **values: Any) -> int:
    """Run ``UPDATE jobs SET values WHERE where``; the number of rows it changed."""
    statement = sa.update(Job).where(where).values(**values)
    result = cast(sa.CursorResult[Any], session.execute(statement, execution_options=_NO_SYNC))
    return result.rowcount or 0


def _won(session: Session, where: Any, **values: Any) -> bool:
    """Run the UPDATE of one job's row; whether its guard matched (the move won)."""
    return _update(session, where, **values) == 1


# ----------------------------------------------------------------------- the API


def submit(session: Session, job: Job, *, now: datetime | None = None) -> Job:
    """Insert a new job row as ``queued``, its message counted as sent now.

    The API dispatches the job after committing; if that send fails, the
    reconciler re-sends it after ``job_requeue_after_s``.
    """
    job.status = JobStatus.QUEUED.value
    job.enqueued_at = now or utcnow()
    session.add(job)
    return job


def cancel_queued(session: Session, job_id: str, *, now: datetime | None = None) -> bool:
    """``queued`` -> ``cancelled`` at once (no worker has it); False if it is not queued.

    Guarded by ``queued``: a worker that claimed the job a moment before wins, and
    the job gets :func:`request_cancel` instead.
    """
    return _won(
        session,
        sa.and_(col(Job.id) == job_id, col(Job.status) == JobStatus.QUEUED),
        status=JobStatus.CANCELLED,
        cancel_requested=True,
        finished_at=now or utcnow(),
        message="cancelled before it started",
    )


def request_cancel(session: Session, job_id: str) -> bool:
    """Ask the job's runner to stop (it reads the flag at each heartbeat).

    Guarded by "not terminal": a job that just finished keeps its outcome.
    """
    return _won(
        session,
        sa.and_(col(Job.id) == job_id, col(Job.status).not_in(TERMINAL_STATUSES)),
        cancel_requested=True,
    )


# ---------------------------------------------------------------------- a worker


def claim(
    session: Session, job_id: str, worker: str, *, stale_before: datetime, now: datetime
) -> bool:
    """``queued`` (or stale ``running``) -> ``running`` under ``worker``, attempt + 1.

    Guarded by "claimable, no cancellation requested": a duplicate delivery of a
    job another worker runs (heartbeat fresh) or finished changes nothing.
    """
    return _won(
        session,
        sa.and_(_claimable(job_id, stale_before), col(Job.cancel_requested).is_(False)),
        status=JobStatus.RUNNING,
        attempts=col(Job.attempts) + 1,
        started_at=now,
        heartbeat_at=now,
        worker=worker,
        error=None,
    )


def give_up(
    session: Session,
    job_id: str,
    attempts: int,
    last_error: str | None,
    *,
    stale_before: datetime,
    now: datetime,
) -> bool:
    """A claimable job whose ``attempts`` are used up -> ``failed`` ("gave up").

    Guarded by "claimable with ``attempts`` unchanged": a live last attempt (its
    heartbeat fresh) is left alone, and so is a job claimed again since it was read.
    """
    error = (
        f"gave up after {attempts} attempts; last error: {last_error.removeprefix(RETRY_PREFIX)}"
        if last_error
        else f"gave up after {attempts} attempts (workers kept dying)"
    )
    return _won(
        session,
        sa.and_(_claimable(job_id, stale_before), col(Job.attempts) == attempts),
        status=JobStatus.FAILED,
        finished_at=now,
        error=truncate(error, ERROR_MAX),
    )


def heartbeat(
    session: Session,
    claim: Claim,
    *,
    progress: float,
    message: str | None,
    log_tail: str,
    now: datetime | None = None,
) -> bool:
    """Record liveness, progress and the log tail; False once the claim is lost.

    Guarded by the claim: a runner whose job was taken over learns it here and stops.
    """
    return _won(
        session,
        _held(claim),
        heartbeat_at=now or utcnow(),
        progress=progress,
        message=truncate(message, MESSAGE_MAX),
        log_tail=log_tail,
    )


def finish(
    session: Session,
    claim: Claim,
    status: JobStatus,
    *,
    message: str | None,
    log_tail: str,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """``running`` -> a terminal ``status`` (with a ``result``: progress 1); False if lost.

    Guarded by the claim: the outcome of a runner that lost its job never
    overwrites what the new owner (or a cancellation) wrote.
    """
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"finish: {status!r} is not a terminal status")
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now or utcnow(),
        "error": truncate(error, ERROR_MAX),
        "log_tail": log_tail,
        "message": truncate(message, MESSAGE_MAX),
    }
    if result is not None:
        values["result"] = result
        values["progress"] = 1.0
    return _won(session, _held(claim), **values)


def release(session: Session, claim: Claim, error: str, *, now: datetime | None = None) -> bool:
    """``running`` -> ``queued`` after a transient error, to be retried; False if lost.

    Guarded by the claim: a runner that lost its job does not hand it back.
    """
    now = now or utcnow()
    return _won(
        session,
        _held(claim),
        status=JobStatus.QUEUED,
        heartbeat_at=None,
        enqueued_at=now,
        error=truncate(f"{RETRY_PREFIX}{error}", ERROR_MAX),
    )


# ---------------------------------------------------------------- the reconciler


def cancel_abandoned(session: Session, *, stale_before: datetime, now: datetime) -> int:
    """Jobs with a cancellation requested that nobody runs -> ``cancelled``; how many.

    Guarded by "cancel requested, and ``queued`` or ``running`` with a stale
    heartbeat": a live runner ends its cancelled job itself.
    """
    return _update(
        session,
        sa.and_(
            col(Job.cancel_requested).is_(True),
            sa.or_(col(Job.status) == JobStatus.QUEUED, _stale_running(stale_before)),
        ),
        status=JobStatus.CANCELLED,
        finished_at=now,
        message="cancelled (no worker was running it)",
    )


def stale_running(session: Session, *, stale_before: datetime) -> list[tuple[str, str, str | None]]:
    """``(id, queue, worker)`` of running jobs (no cancellation) whose heartbeat is stale."""
    rows = session.exec(
        select(col(Job.id), col(Job.queue), col(Job.worker)).where(
            _stale_running(stale_before),
            col(Job.cancel_requested).is_(False),
        )
    ).all()
    return list(rows)


def requeue_stale(
    session: Session, job_id: str, worker: str | None, *, stale_before: datetime, now: datetime
) -> bool:
    """A ``running`` job whose worker stopped beating -> ``queued``, counted as sent now.

    Guarded by "``running`` with a stale heartbeat": of several reconcilers one
    wins, and a runner that beat again in the meantime keeps its job.
    """
    return _won(
        session,
        sa.and_(col(Job.id) == job_id, _stale_running(stale_before)),
        status=JobStatus.QUEUED,
        heartbeat_at=None,
        enqueued_at=now,
        message=truncate(f"requeued: worker {worker} stopped sending heartbeats", MESSAGE_MAX),
    )


def unsent_queued(
    session: Session, *, sent_before: datetime
) -> list[tuple[str, str, datetime | None, datetime | None]]:
    """``(id, queue, created_at, enqueued_at)`` of queued jobs last sent before ``sent_before``.

    Oldest first; jobs with a cancellation requested are left to :func:`cancel_abandoned`.
    """
    rows = session.exec(
        select(col(Job.id), col(Job.queue), col(Job.created_at), col(Job.enqueued_at))
        .where(
            col(Job.status) == JobStatus.QUEUED,
            col(Job.cancel_requested).is_(False),
            older_than(col(Job.enqueued_at), sent_before),
        )
        .order_by(col(Job.created_at))
    ).all()
    return list(rows)


def mark_sent(session: Session, job_id: str, last_sent: datetime | None, *, now: datetime) -> bool:
    """Record that a queued job's message is being sent again now (its ``enqueued_at``).

    Guarded by "``queued``, not sent since ``last_sent``" (what the caller read):
    of several reconcilers exactly one sends the message.
    """
    sent_at = col(Job.enqueued_at)
    seen = sent_at.is_(None) if last_sent is None else sent_at <= last_sent
    return _won(
        session,
        sa.and_(col(Job.id) == job_id, col(Job.status) == JobStatus.QUEUED, seen),
        enqueued_at=now,
    )
