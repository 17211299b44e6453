"""The worker's Celery application: receives ``run_job(job_id)`` over Redis.

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

from registry.queue import RUN_JOB_TASK, make_app
from registry.settings import Settings

log = logging.getLogger("loreg.worker")
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0


def retry_countdown(retries: int) -> float:
    """Seconds to wait before retry number ``retries + 1``: 2, 4, 8, ... capped at 300."""
    return min(BACKOFF_BASE_S * 2 ** max(retries, 0), BACKOFF_MAX_S)


def make_celery(settings: Settings) -> Celery:
    """The worker's Celery app (:func:`registry.queue.make_app`) with ``loreg.run_job``.

    The task body imports the worker code lazily.
    """
    app = make_app(settings)
    _register_run_job(app, settings)
    return app


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
