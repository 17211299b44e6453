"""A dispatcher that records what it is sent instead of running it.

Stands in for Celery or the embedded executor where a test must decide when
(and whether) a job runs: the test runs the recorded jobs itself with
``workers.runner.run_job``, so nothing races the assertions.
"""

from __future__ import annotations

import threading


class RecordingDispatcher:
    """Implements the dispatcher's ``enqueue``/``close``; keeps ``(job_id, queue)`` pairs."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def enqueue(self, job_id: str, queue: str) -> None:
        """Record one send."""
        with self._lock:
            self.sent.append((job_id, queue))

    def close(self) -> None:
        """Nothing to release."""
