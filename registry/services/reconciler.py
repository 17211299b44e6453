"""The reconciler: makes sure every unfinished job has a message a worker will get.

The broker can lose messages (Redis restarted without persistence, a failed
publish while it was down) and workers can die mid-job. The job rows tell what
should be happening, so the reconciler, run every few seconds in each worker's
main process, repairs the difference:

* a ``queued`` job not picked up for ``job_requeue_after_s`` is enqueued again
  (waiting jobs in a long backlog are re-sent ever less often: the interval
  grows with the time already waited, capped at ``REQUEUE_BACKOFF_CAP`` times
  ``job_requeue_after_s``, so duplicates do not pile up in the queue);
* a ``running`` job whose heartbeat is older than ``job_stale_after_s`` (its
  worker died) goes back to ``queued`` and is enqueued;
* a job whose cancellation was requested but that no worker runs any more is
  marked ``cancelled``.

Each change is a conditional UPDATE of :mod:`registry.services.job_state`, so
several reconcilers at once each act on a job at most once per interval;
duplicate messages are harmless anyway because a worker's claim
(:func:`registry.services.job_state.claim`) is atomic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from registry.models import utcnow
from registry.services import job_state
from registry.services.context import Context
from registry.services.periodic import PeriodicThread

log = logging.getLogger("loreg.reconciler")
Enqueue = Callable[[str, str], None]
Pending = tuple[str, str]  # (job id, queue)
REQUEUE_BACKOFF_CAP = 10


def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def requeue_due(
    created_at: datetime | None, enqueued_at: datetime | None, now: datetime, after_s: float
) -> bool:
    """Whether a queued job's message should be sent again now.

    Due when the last send is older than ``after_s`` and than the time the job
    had already waited at that send (doubling intervals), the wait being capped
    at ``REQUEUE_BACKOFF_CAP * after_s``.
    """
    enqueued_at = _aware(enqueued_at)
    if enqueued_at is None:
        return True
    created_at = _aware(created_at) or enqueued_at
    waited = max((enqueued_at - created_at).total_seconds(), 0.0)
    interval = min(max(after_s, waited), REQUEUE_BACKOFF_CAP * after_s)
    return (now - enqueued_at).total_seconds() >= interval


def _cancel_abandoned(session: Session, now: datetime, stale_before: datetime) -> int:
    """Cancel requested on a job nobody runs (queued, or running without heartbeat)."""
    cancelled = job_state.cancel_abandoned(session, stale_before=stale_before, now=now)
    session.commit()
    return cancelled


def _recover_stale(session: Session, now: datetime, stale_before: datetime) -> list[Pending]:
    """Running jobs whose worker stopped beating: back to ``queued``; returns them."""
    recovered = []
    for job_id, queue, worker in job_state.stale_running(session, stale_before=stale_before):
        won = job_state.requeue_stale(session, job_id, worker, stale_before=stale_before, now=now)
        session.commit()
        if won:
            recovered.append((job_id, queue))
    return recovered


def _take_due_queued(session: Session, now: datetime, after_s: float) -> list[Pending]:
    """Queued jobs due for another message; marks each as sent now (once, atomically)."""
    before = now - timedelta(seconds=after_s)
    due = []
    for job_id, queue, created_at, enqueued_at in job_state.unsent_queued(
        session, sent_before=before
    ):
        if not requeue_due(created_at, enqueued_at, now, after_s):
            continue
        won = job_state.mark_sent(session, job_id, enqueued_at, now=now)
        session.commit()
        if won:
            due.append((job_id, queue))
    return due


def reconcile(ctx: Context, enqueue: Enqueue, *, now: datetime | None = None) -> dict[str, int]:
    """One pass: cancel abandoned jobs, recover stale running jobs, re-send lost messages.

    ``enqueue(job_id, queue)`` sends a job's message. Returns counts:
    ``cancelled``, ``recovered`` (stale running -> queued), ``requeued`` (queued,
    message sent again) and ``enqueue_failed`` (the broker refused; retried on a
    later pass).
    """
    settings = ctx.settings
    now = now or utcnow()
    stale_before = now - timedelta(seconds=settings.job_stale_after_s)
    counts = {"cancelled": 0, "recovered": 0, "requeued": 0, "enqueue_failed": 0}
    with Session(ctx.engine) as session:
        counts["cancelled"] = _cancel_abandoned(session, now, stale_before)
        recovered = _recover_stale(session, now, stale_before)
        queued = _take_due_queued(session, now, settings.job_requeue_after_s)
    counts["recovered"] = len(recovered)
    tagged = [(job, "recovered") for job in recovered] + [(job, "requeued") for job in queued]
    for (job_id, queue), why in tagged:
        try:
            enqueue(job_id, queue)
        except Exception as exc:  # noqa: BLE001 - the broker may be down; retry next pass
            counts["enqueue_failed"] += 1
            log.warning("could not enqueue job %s (%s); will retry", job_id, exc)
            continue
        if why == "requeued":
            counts["requeued"] += 1
        log.info("enqueued %s job %s on %s", why, job_id, queue)
    return counts


def default_interval(ctx: Context) -> float:
    """Half the shorter of the requeue and stale delays, between 1 and 30 seconds."""
    settings = ctx.settings
    return min(max(min(settings.job_requeue_after_s, settings.job_stale_after_s) / 2, 1.0), 30.0)


class Reconciler(PeriodicThread):
    """A daemon thread running :func:`reconcile` every ``interval_s`` seconds.

    The first pass runs at once. The database pool is emptied after every pass, so
    processes forked from this one (Celery's pool children) never inherit an open
    connection.
    """

    def __init__(self, ctx: Context, enqueue: Enqueue, interval_s: float | None = None):
        interval = interval_s if interval_s is not None else default_interval(ctx)
        super().__init__(interval, name="reconciler", first_pass_now=True)
        self.ctx = ctx
        self.enqueue = enqueue

    def run_once(self) -> dict[str, int]:
        """One pass; errors (database down) are logged, not raised."""
        try:
            counts = reconcile(self.ctx, self.enqueue)
        except Exception as exc:  # noqa: BLE001 - keep reconciling after outages
            log.warning("reconcile pass failed: %s", exc)
            return {}
        finally:
            self.passes += 1
            self.ctx.engine.dispose()
        if any(counts.values()):
            log.info("reconciled: %s", counts)
        return counts
