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
import os
import threading
import time
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


#: How often a local job process checks that the API process that started it still runs.
PARENT_CHECK_S = 1.0


def exit_with_parent(parent_pid: int, interval: float = PARENT_CHECK_S) -> None:
    """Initializer of a local job process: exit once ``parent_pid`` is no longer its parent.

    A pool's worker holds both ends of its task pipe, so it never sees the API process
    go: killed (SIGKILL) or ended by a signal (uvicorn re-raises SIGTERM after its
    graceful shutdown, which skips the pool's cleanup), it would wait for tasks forever.
    A job it was running is abandoned; its heartbeat goes stale and the reconciler of
    the next ``loreg serve`` re-queues it.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="loreg-exit-with-parent", daemon=True).start()


class LocalDispatcher:
    """Embedded mode: run jobs in a child process (torch stays out of the API process)."""

    def __init__(self, settings: Settings, run_job: RunJob, max_workers: int = 1):
        self.settings = settings
        self.run_job = run_job
        self.pool = ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
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
