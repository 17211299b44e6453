"""Polling with a deadline: the one way tests wait for something to become true."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], object] = "condition not met",
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value.

    Returns that value. The first call is made at once; an exception raised by
    ``predicate`` propagates unchanged (so a predicate may assert on what it sees).
    After ``timeout`` seconds of falsy answers it raises :class:`AssertionError`
    with ``message`` (a callable is called only then, to describe the failure,
    e.g. with logs) and the last value ``predicate`` returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (within {timeout:g} s; last value: {value!r})")
        time.sleep(interval)
