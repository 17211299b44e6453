"""Hub timestamps (``lastModified``, ``createdAt``, commit dates) are UTC with a ``Z``.

The client parses them with ``huggingface_hub.utils.parse_datetime`` as UTC, so a
time in another zone printed with a ``Z`` would be hours off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from huggingface_hub.utils import parse_datetime

from registry.services.hub.read import hub_time


def test_an_aware_time_in_another_zone_is_converted_to_utc():
    tokyo = timezone(timedelta(hours=9))
    moment = datetime(2026, 3, 1, 8, 30, 5, 123456, tzinfo=tokyo)  # Postgres, TimeZone=Asia/Tokyo
    assert hub_time(moment) == "2026-02-28T23:30:05.123Z"
    assert parse_datetime(hub_time(moment)) == moment.replace(microsecond=123000)


def test_a_naive_time_is_taken_as_utc():
    moment = datetime(2026, 3, 1, 8, 30, 5, 7000)  # SQLite keeps naive UTC
    assert hub_time(moment) == "2026-03-01T08:30:05.007Z"
    assert parse_datetime(hub_time(moment)) == moment.replace(tzinfo=UTC)
