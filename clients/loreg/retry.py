"""When and how long the client retries: bounded exponential backoff with jitter.

Two kinds of failure are retried:

* *outages*: the registry answered 503 (``database_unavailable``,
  ``store_unavailable``, ``broker_unavailable``, or a bare 503). They are retried
  until the time budget (``LOREG_RETRY_MAX_S``, default 30 s) is spent, waiting at
  least the answer's ``Retry-After``;
* *glitches*: connection errors and other 5xx. They are retried up to
  ``attempts`` times (``LOREG_RETRIES``), within the same time budget.

The caller decides what is safe to retry (a POST is retried only when it was
never sent, or for a 503 that says nothing was done).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from loreg.errors import ServiceUnavailableError

T = TypeVar("T")
Kind = Literal["outage", "glitch"] | None

#: Longest single wait between two attempts, whatever ``Retry-After`` says.
MAX_WAIT_S = 30.0


@dataclass
class RetryPolicy:
    """Attempts for glitches, a time budget for everything, backoff ``base_s * 2**n``."""

    attempts: int = 3
    budget_s: float = 30.0
    base_s: float = 0.5
    cap_s: float = 8.0
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, number: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt ``number`` (1-based).

        Exponential backoff, capped, with "equal jitter" (half fixed, half random),
        and never less than the server's ``Retry-After``.
        """
        backoff = min(self.cap_s, self.base_s * 2 ** (number - 1))
        wait = backoff * (0.5 + 0.5 * self.rng())
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, MAX_WAIT_S)

    def run(
        self,
        attempt: Callable[[], T],
        classify: Callable[[BaseException], Kind],
        *,
        sleep: Callable[[float], object] = time.sleep,
    ) -> T:
        """Call ``attempt`` until it succeeds or retrying is over; then raise its error.

        ``classify`` says whether an error is an ``"outage"``, a ``"glitch"`` or
        final (None). A :class:`ServiceUnavailableError` that exhausts the budget
        gets a note saying how long it was retried.
        """
        started = time.monotonic()
        number = 0
        while True:
            number += 1
            try:
                return attempt()
            except Exception as exc:
                kind = classify(exc)
                if kind is None:
                    raise
                elapsed = time.monotonic() - started
                wait = self.delay(number, getattr(exc, "retry_after", None))
                out_of_attempts = kind == "glitch" and number >= self.attempts
                if out_of_attempts or elapsed + wait > self.budget_s:
                    if isinstance(exc, ServiceUnavailableError):
                        _note_retries(exc, number, elapsed)
                    raise
                sleep(wait)


def _note_retries(exc: ServiceUnavailableError, attempts: int, elapsed: float) -> None:
    if attempts > 1:
        tail = f" (tried {attempts} times over {elapsed:.1f} s; LOREG_RETRY_MAX_S sets how long)"
    else:
        tail = " (not retried: LOREG_RETRY_MAX_S sets how long to retry)"
    exc.message = exc.message + tail
    exc.args = (exc.message,)
