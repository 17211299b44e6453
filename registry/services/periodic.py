"""A background thread that runs one pass of some maintenance every N seconds.

The reconciler (jobs) and the store scrub (fsck) are both such passes; they run in
``loreg serve`` in embedded mode and in each ``loreg worker`` main process otherwise.
"""

from __future__ import annotations

import threading
from typing import Any, Self


class PeriodicThread:
    """A daemon thread calling :meth:`run_once` every ``interval_s`` seconds.

    Subclasses implement :meth:`run_once` (one pass; it must log, not raise, the
    errors of an outage). With ``first_pass_now`` the first pass runs at start,
    else one interval after it.
    """

    def __init__(self, interval_s: float, *, name: str, first_pass_now: bool) -> None:
        if interval_s <= 0:
            raise ValueError(f"{name} interval must be > 0 seconds, got {interval_s}")
        self.interval_s = interval_s
        self.passes = 0
        self._first_pass_now = first_pass_now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"loreg-{name}", daemon=True)

    def run_once(self) -> Any:
        """One pass (implemented by subclasses)."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop and wait for it (a pass in progress finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        if self._first_pass_now:
            self.run_once()
        while not self._stop.wait(self.interval_s):
            self.run_once()
