"""Delivering ``run_job(job_id)`` to a worker: Celery in production, a local process otherwise.

Dispatch is at-least-once and best effort: the job row is committed first, so a
failed enqueue (Redis down) only delays the job until the reconciler
re-enqueues it. Workers claim a job atomically, so duplicates are harmless.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol

from registry.settings import Settings

log = logging.getLogger("loreg.dispatch")
RUN_JOB_TASK = "loreg.run_job"


class Dispatcher(Protocol):
    """Sends a job to a worker queue."""

    def enqueue(self, job_id: str, queue: str) -> None:
        """Ask a worker to run the job (may be delivered more than once)."""

    def close(self) -> None:
        """Release resources."""


class CeleryDispatcher:
    """Sends ``loreg.run_job`` to the ``gpu``/``cpu`` queue through the Celery broker."""

    def __init__(self, settings: Settings):
        from workers.celery_app import make_celery

        self.app = make_celery(settings)

    def enqueue(self, job_id: str, queue: str) -> None:
        """Publish the task message (Redis)."""
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)

    def close(self) -> None:
        """Close broker connections."""
        self.app.close()


class LocalDispatcher:
    """Embedded mode: run jobs in a child process (torch stays out of the API process)."""

    def __init__(self, settings: Settings, max_workers: int = 1):
        self.settings = settings
        self.pool = ProcessPoolExecutor(
            max_workers=max_workers, mp_context=multiprocessing.get_context("spawn")
        )

    def enqueue(self, job_id: str, queue: str) -> None:
        """Queue the job on the local process pool."""
        from workers.runner import run_job_in_process

        future = self.pool.submit(run_job_in_process, self.settings, job_id)
        future.add_done_callback(self._log_failure)

    @staticmethod
    def _log_failure(future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("local job run failed: %s", exc)

    def close(self) -> None:
        """Stop the pool (running jobs finish first)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_dispatcher(settings: Settings) -> Dispatcher:
    """Celery when a broker URL is configured, else the local executor."""
    if settings.redis_url:
        return CeleryDispatcher(settings)
    return LocalDispatcher(settings)
