"""Which job errors the runner retries later (transient) and which fail the job."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from registry.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    InvalidConfig,
    StoreUnavailable,
)
from workers.runner import is_transient


@pytest.mark.parametrize(
    "exc",
    [
        StoreUnavailable("the object store is down"),
        DatabaseUnavailable("the database is down"),
        BrokerUnavailable("the broker is down"),
        sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
        ConnectionResetError("reset"),
    ],
)
def test_outages_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc", [InvalidConfig("r must be > 0"), ValueError("bad param"), KeyError("x")]
)
def test_input_errors_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)
