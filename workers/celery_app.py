"""The worker's Celery application: receives ``run_job(job_id)`` over Redis.

It also holds the periodic tasks Celery beat sends (:func:`beat_schedule`): the
scheduled gc, ``loreg.gc`` every ``LOREG_GC_INTERVAL_S`` seconds on the ``cpu``
queue, a thin task calling :func:`registry.services.gc.collect_garbage`. Beat runs
with ``loreg worker --beat`` (in one worker) or on its own:
``celery -A workers.beat beat``.

The delivery settings (acks late, no prefetch, visibility timeout), queue names
and task name live in :mod:`registry.queue`, shared with the API that sends the
messages; this module adds the task that runs them, with retries.

Duplicate deliveries are harmless: :func:`workers.runner.claim` is atomic and
a job's result is published once (the job id is its idempotency key). Messages
Redis loses (a restart without persistence) are re-sent by
:mod:`registry.services.reconciler`.
"""

from __future__ import annotations

import logging

from celery import Celery, Task

from registry.queue import DEFAULT_QUEUE, RUN_JOB_TASK, make_app
from registry.settings import Settings

log = logging.getLogger("loreg.worker")
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
GC_TASK = "loreg.gc"


def retry_countdown(retries: int) -> float:
    """Seconds to wait before retry number ``retries + 1``: 2, 4, 8, ... capped at 300."""
    return min(BACKOFF_BASE_S * 2 ** max(retries, 0), BACKOFF_MAX_S)


def make_celery(settings: Settings) -> Celery:
    """The worker's Celery app (:func:`registry.queue.make_app`) with ``loreg.run_job``.

    The task body imports the worker code lazily.
    """
    app = make_app(settings)
    _register_run_job(app, settings)
    _register_gc(app, settings)
    app.conf.beat_schedule = beat_schedule(settings)
    return app


def beat_schedule(settings: Settings) -> dict[str, dict]:
    """Celery beat's entries: the gc every ``gc_interval_s`` seconds (none when 0)."""
    if settings.gc_interval_s <= 0:
        return {}
    return {
        "loreg-gc": {
            "task": GC_TASK,
            "schedule": settings.gc_interval_s,
            "options": {"queue": DEFAULT_QUEUE, "expires": settings.gc_interval_s},
        }
    }


def run_gc(settings: Settings) -> dict:
    """The body of ``loreg.gc``: one gc pass with this worker process's context."""
    from registry.services.gc import collect_garbage
    from workers.runner import context_for

    report = collect_garbage(context_for(settings))
    log.info("scheduled gc: %s", report)
    return report


def _register_gc(app: Celery, settings: Settings) -> None:
    @app.task(name=GC_TASK, shared=False)
    def gc_task() -> dict:
        """Remove expired uploads and blobs unreferenced past the grace period."""
        return run_gc(settings)


def _register_run_job(app: Celery, settings: Settings) -> None:
    # shared=False: each app keeps its own task, bound to its own settings (a process that
    # builds apps for several settings, like the test suite, must not mix them up)
    @app.task(name=RUN_JOB_TASK, bind=True, max_retries=settings.job_max_attempts, shared=False)
    def run_job_task(self: Task, job_id: str) -> str:
        """Run one job; transient errors are retried with exponential backoff."""
        from workers.runner import TransientJobError, context_for, is_transient, run_job

        try:
            return run_job(context_for(settings), job_id)
        except Exception as exc:
            if not (isinstance(exc, TransientJobError) or is_transient(exc)):
                raise
            countdown = retry_countdown(self.request.retries)
            log.warning(
                "job %s: transient error (%s); retry %d/%d in %.0f s",
                job_id,
                exc,
                self.request.retries + 1,
                settings.job_max_attempts,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown) from exc
