"""Delivering ``run_job(job_id)`` to a worker: Celery in production, a local process otherwise.

Dispatch is at-least-once and best effort: the job row is committed first, so a
failed enqueue (Redis down) only delays the job until the reconciler
re-enqueues it. Workers claim a job atomically, so duplicates are harmless.

The local executor runs a job-running callable it is given (``loreg serve``, the
composition root in :mod:`registry.serve`, passes the worker's entry point);
this module imports no worker code.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

from registry.queue import CelerySender
from registry.settings import Settings

log = logging.getLogger("loreg.dispatch")
# ``run_job(settings, job_id)``, run in a child process: a module-level function (picklable)
RunJob = Callable[[Settings, str], Any]


class Dispatcher(Protocol):
    """Sends a job to a worker queue."""

    def enqueue(self, job_id: str, queue: str) -> None:
        """Ask a worker to run the job (may be delivered more than once)."""

    def close(self) -> None:
        """Release resources."""


class CeleryDispatcher:
    """Sends ``loreg.run_job`` to the ``gpu``/``cpu`` queue through the Celery broker."""

    def __init__(self, settings: Settings):
        self.sender = CelerySender(settings)

    def enqueue(self, job_id: str, queue: str) -> None:
        """Publish the task message (Redis)."""
        self.sender.send(job_id, queue)

    def close(self) -> None:
        """Close broker connections."""
        self.sender.close()


class LocalDispatcher:
    """Embedded mode: run jobs in a child process (torch stays out of the API process)."""

    def __init__(self, settings: Settings, run_job: RunJob, max_workers: int = 1):
        self.settings = settings
        self.run_job = run_job
        self.pool = ProcessPoolExecutor(
            max_workers=max_workers, mp_context=multiprocessing.get_context("spawn")
        )

    def enqueue(self, job_id: str, queue: str) -> None:
        """Queue the job on the local process pool."""
        future = self.pool.submit(self.run_job, self.settings, job_id)
        future.add_done_callback(self._log_failure)

    @staticmethod
    def _log_failure(future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("local job run failed: %s", exc)

    def close(self) -> None:
        """Stop the pool (running jobs finish first)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


class NoExecutor:
    """Neither a broker nor a local executor: jobs stay ``queued`` (nothing can run them)."""

    def enqueue(self, job_id: str, queue: str) -> None:
        """Refuse: the caller logs it and the job waits for a reconciler with an executor."""
        raise RuntimeError(
            "no job executor: set LOREG_REDIS_URL for workers, or run the API with `loreg serve`"
        )

    def close(self) -> None:
        """Nothing to release."""


def make_dispatcher(settings: Settings, run_job: RunJob | None = None) -> Dispatcher:
    """Celery when a broker URL is configured, else the local executor running ``run_job``."""
    if settings.redis_url:
        return CeleryDispatcher(settings)
    if run_job is not None:
        return LocalDispatcher(settings, run_job)
    return NoExecutor()
