"""SDK helpers for tokens, the audit log and presets: durations, moments and bodies.

``--expires 30d`` and ``--since 2h`` are durations (:func:`parse_duration`); a moment
(:func:`moment`) is an ISO-8601 time or a duration ago. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from loreg.errors import ValidationFailedError

_DURATION = re.compile(r"(\d+)\s*([smhdwy]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
#: Longest token lifetime the server accepts (ten years), in seconds.
MAX_TOKEN_LIFETIME_S = 10 * 366 * 86400


def parse_duration(value: str | int | float, what: str = "duration") -> int:
    """``30d``, ``12h``, ``90m``, ``2w``, ``1y``, ``45s`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValidationFailedError(f"{what} {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = int(value)
    else:
        match = _DURATION.fullmatch(value.strip().lower())
        if match is None:
            raise ValidationFailedError(
                f"{what} {value!r} is not a duration: write e.g. 45s, 90m, 12h, 30d, 2w or 1y"
            )
        seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < 1:
        raise ValidationFailedError(f"{what} {value!r} must be at least one second")
    return seconds


def moment(value: str | datetime, now: datetime | None = None) -> str:
    """An ISO-8601 UTC time for a filter: a datetime, an ISO-8601 text (UTC if it has no
    offset), or a duration ago (``2h``: two hours before ``now``)."""
    if isinstance(value, datetime):
        when = value
    else:
        text = value.strip()
        if _DURATION.fullmatch(text.lower()):
            when = (now or datetime.now(UTC)) - timedelta(seconds=parse_duration(text, "time"))
        else:
            try:
                when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationFailedError(
                    f"time {value!r} is neither ISO-8601 (2026-01-31T12:00:00Z) nor a "
                    "duration ago (2h, 7d)"
                ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


def token_expiry(expires: str | int | float | datetime | None) -> dict[str, Any]:
    """The expiry fields of a token request: ``expires_in`` for a duration, ``expires_at``
    for a datetime, nothing for None."""
    if expires is None:
        return {}
    if isinstance(expires, datetime):
        return {"expires_at": moment(expires)}
    seconds = parse_duration(expires, "expiry")
    if seconds > MAX_TOKEN_LIFETIME_S:
        raise ValidationFailedError(f"expiry {expires!r} is more than ten years")
    return {"expires_in": seconds}


def preset_request(params: Mapping[str, Any], description: str | None = None) -> dict[str, Any]:
    """The body of ``PUT /v1/presets/{name}``: the params given (None values left out)."""
    body: dict[str, Any] = {"params": {k: v for k, v in params.items() if v is not None}}
    if description is not None:
        body["description"] = description
    return body
