"""tests.support.waiting.wait_until: returns the first truthy value, fails with a message."""

from __future__ import annotations

import time

import pytest

from tests.support.waiting import wait_until


def test_returns_the_predicates_first_truthy_value():
    answers = iter([None, 0, "", {"status": "succeeded"}, "never asked"])
    assert wait_until(lambda: next(answers), timeout=5, interval=0.001) == {"status": "succeeded"}
    assert next(answers) == "never asked"


def test_a_value_true_at_once_returns_without_sleeping():
    started = time.monotonic()
    assert wait_until(lambda: 42, timeout=5, interval=10) == 42
    assert time.monotonic() - started < 1.0


def test_times_out_with_the_message_and_the_last_value():
    calls = []

    def predicate() -> list[int]:
        calls.append(1)
        return []

    started = time.monotonic()
    with pytest.raises(AssertionError) as caught:
        wait_until(predicate, timeout=0.2, interval=0.01, message="the job never finished")
    took = time.monotonic() - started
    assert 0.2 <= took < 2.0
    assert len(calls) > 1
    text = str(caught.value)
    assert "the job never finished" in text
    assert "last value: []" in text
    assert "0.2 s" in text


def test_a_callable_message_is_built_only_on_timeout():
    built = []

    def message() -> str:
        built.append(1)
        return "logs: worker died"

    assert wait_until(lambda: True, timeout=1, message=message) is True
    assert built == []
    with pytest.raises(AssertionError, match="logs: worker died"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, message=message)
    assert built == [1]


def test_stops_early_once_the_condition_holds():
    ready_at = time.monotonic() + 0.1
    started = time.monotonic()
    assert wait_until(lambda: time.monotonic() >= ready_at, timeout=30, interval=0.01)
    assert time.monotonic() - started < 5.0


def test_an_exception_from_the_predicate_propagates_at_once():
    def predicate() -> bool:
        raise ValueError("the worker died")

    started = time.monotonic()
    with pytest.raises(ValueError, match="the worker died"):
        wait_until(predicate, timeout=30)
    assert time.monotonic() - started < 5.0
