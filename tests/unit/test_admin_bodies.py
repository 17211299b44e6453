"""``loreg.admin``: durations, filter moments, token expiry and preset bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from loreg.admin import moment, parse_duration, preset_request, token_expiry
from loreg.errors import ValidationFailedError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600),
     ("1y", 31536000), ("7", 7), (" 3 D ", 259200), (5, 5)],
)  # fmt: skip
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1.5h", "-3d", "0", "0s", "h", True])
def test_bad_durations(text) -> None:
    with pytest.raises(ValidationFailedError):
        parse_duration(text)


def test_moments_are_utc_iso() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert moment("2h", now=now) == "2026-06-01T10:00:00+00:00"
    assert moment("2026-01-31T12:00:00Z") == "2026-01-31T12:00:00+00:00"
    assert moment("2026-01-31T12:00:00") == "2026-01-31T12:00:00+00:00"  # no offset: UTC
    plus_two = datetime(2026, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert moment(plus_two) == "2026-01-31T12:00:00+00:00"
    with pytest.raises(ValidationFailedError, match="neither ISO-8601"):
        moment("yesterday")


def test_token_expiry_fields() -> None:
    assert token_expiry(None) == {}
    assert token_expiry("30d") == {"expires_in": 30 * 86400}
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert token_expiry(when) == {"expires_at": "2030-01-01T00:00:00+00:00"}
    with pytest.raises(ValidationFailedError, match="ten years"):
        token_expiry("11y")


def test_preset_request_leaves_out_unset_params() -> None:
    body = preset_request({"r": 16, "lora_alpha": 32.0, "steps": None}, "notes")
    assert body == {"params": {"r": 16, "lora_alpha": 32.0}, "description": "notes"}
    assert preset_request({"r": 1, "lora_alpha": 1}) == {"params": {"r": 1, "lora_alpha": 1}}
