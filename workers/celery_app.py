"""The Celery application: delivers ``run_job(job_id)`` to workers over Redis.

Celery is only the delivery channel; the job row in the database is the truth,
so there is no result backend. Settings chosen so that no job is lost:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged
  only after the job ran; if the worker process dies it is redelivered;
* ``worker_prefetch_multiplier=1``: a busy worker does not hoard messages;
* Redis ``visibility_timeout``: an unacknowledged message (its worker vanished)
  goes back to the queue after that long.

Duplicate deliveries are harmless: :func:`workers.runner.claim` is atomic and
a job's result is published once (the job id is its idempotency key). Messages
Redis loses (a restart without persistence) are re-sent by
:mod:`registry.services.reconciler`.
"""

from __future__ import annotations

import logging

from celery import Celery, Task
from kombu import Queue

from registry.services.dispatch import RUN_JOB_TASK
from registry.settings import Settings

log = logging.getLogger("loreg.worker")
QUEUES = ("gpu", "cpu")
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
# Publishing to a broker that is down must not hang an API request for long: the
# job row is committed first and the reconciler re-sends the message later.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 1.0,
}


def retry_countdown(retries: int) -> float:
    """Seconds to wait before retry number ``retries + 1``: 2, 4, 8, ... capped at 300."""
    return min(BACKOFF_BASE_S * 2 ** max(retries, 0), BACKOFF_MAX_S)


def make_celery(settings: Settings) -> Celery:
    """A Celery app on ``settings.redis_url`` with the ``loreg.run_job`` task registered.

    The API process uses it only to send messages (the task body imports the
    worker code lazily, so no tensor library is loaded there).
    """
    if not settings.redis_url:
        raise ValueError("settings.redis_url is not set: set LOREG_REDIS_URL (redis://host:6379/0)")
    app = Celery("loreg", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        # a running job must not be killed because the broker blinked: its row is the truth
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_default_queue="cpu",
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
    )
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
