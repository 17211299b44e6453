"""The job queue's sending side: broker URL, queue names, task name, delivery settings.

Celery over Redis only delivers ``run_job(job_id)``; the job row in the database is
the truth, so there is no result backend. The API sends with :class:`CelerySender`;
the worker app (``workers.celery_app``) is built on :func:`make_app` too, so both
sides share one copy of these settings, chosen so that no job is lost:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged
  only after the job ran; if the worker process dies it is redelivered;
* ``worker_prefetch_multiplier=1``: a busy worker does not hoard messages;
* Redis ``visibility_timeout``: an unacknowledged message (its worker vanished)
  goes back to the queue after that long.

Celery is imported only when an app is built (it comes with the ``queue`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loreg.vocabulary import Queue as QueueName
from registry.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

QUEUES: tuple[str, ...] = tuple(q.value for q in QueueName)
DEFAULT_QUEUE: str = QueueName.CPU.value
RUN_JOB_TASK = "loreg.run_job"
# Publishing to a broker that is down must not hang an API request for long: the
# job row is committed first and the reconciler re-sends the message later.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 1.0,
}


def broker_url(settings: Settings) -> str:
    """The Redis broker URL (``LOREG_REDIS_URL``); ValueError when it is not set."""
    if not settings.redis_url:
        raise ValueError("settings.redis_url is not set: set LOREG_REDIS_URL (redis://host:6379/0)")
    return settings.redis_url


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings the API and the workers share (see the module docstring)."""
    from kombu import Queue

    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        # a running job must not be killed because the broker blinked: its row is the truth
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_default_queue": DEFAULT_QUEUE,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
    }


def make_app(settings: Settings) -> Celery:
    """A Celery app on the settings' broker with the shared configuration, no task registered."""
    from celery import Celery

    app = Celery("loreg", broker=broker_url(settings), set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class CelerySender:
    """Sends ``loreg.run_job(job_id)`` messages to a queue; never runs jobs itself."""

    def __init__(self, settings: Settings, app: Celery | None = None):
        self.app = app if app is not None else make_app(settings)

    def send(self, job_id: str, queue: str) -> None:
        """Publish one task message (Redis); retried briefly, then the error is raised."""
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)

    def close(self) -> None:
        """Close broker connections."""
        self.app.close()
