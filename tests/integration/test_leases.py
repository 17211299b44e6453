"""Maintenance leases on both backends: one process runs the periodic scrub.

The claim rules (held, renewed, expired, released), that claims racing in threads
give the lease to exactly one, and that two periodic scrubbers on one database scrub
once per interval between them, the second taking over when the first stops.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from registry.models import utcnow
from registry.services import fsck, leases
from registry.services.context import Context
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _lease_row(ctx: Context) -> tuple[str, datetime]:
    """The fsck lease's holder and expiry as stored (UTC)."""
    with ctx.engine.connect() as conn:
        holder, expires = conn.execute(
            sa.text("SELECT holder, expires_at FROM maintenance_leases WHERE name = :n"),
            {"n": fsck.LEASE_NAME},
        ).one()
    if isinstance(expires, str):  # SQLite hands the text back through a raw query
        expires = datetime.fromisoformat(expires)
    return holder, expires if expires.tzinfo else expires.replace(tzinfo=UTC)


def test_a_lease_is_held_renewed_and_taken_over_only_once_expired(registry_server):
    engine = registry_server.ctx.engine
    t0 = utcnow()
    assert leases.holder_of(engine, "scrub", now=t0) is None
    assert leases.claim(engine, "scrub", "a", 60, now=t0)  # nobody had it
    assert not leases.claim(engine, "scrub", "b", 60, now=t0 + timedelta(seconds=30))
    assert leases.claim(engine, "scrub", "a", 60, now=t0 + timedelta(seconds=50))  # renewed
    # a's renewal runs to t0 + 110 s: b still waits at t0 + 100 s, takes it at t0 + 111 s
    assert not leases.claim(engine, "scrub", "b", 60, now=t0 + timedelta(seconds=100))
    assert leases.holder_of(engine, "scrub", now=t0 + timedelta(seconds=100)) == "a"
    assert leases.claim(engine, "scrub", "b", 60, now=t0 + timedelta(seconds=111))
    assert not leases.claim(engine, "scrub", "a", 60, now=t0 + timedelta(seconds=112))
    assert leases.claim(engine, "other-pass", "a", 60, now=t0)  # leases are per name
    leases.release(engine, "scrub", "a")  # not a's any more: nothing happens
    assert leases.holder_of(engine, "scrub", now=t0 + timedelta(seconds=112)) == "b"
    leases.release(engine, "scrub", "b")
    assert leases.holder_of(engine, "scrub", now=t0 + timedelta(seconds=112)) is None
    assert leases.claim(engine, "scrub", "a", 60, now=t0 + timedelta(seconds=113))
    with pytest.raises(ValueError, match="> 0 seconds"):
        leases.claim(engine, "scrub", "a", 0)


@pytest.mark.parametrize("state", ["never claimed", "expired"])
def test_racing_claims_give_the_lease_to_exactly_one(registry_server, state):
    engine = registry_server.ctx.engine
    if state == "expired":
        assert leases.claim(engine, "race", "old", 1, now=utcnow() - timedelta(seconds=10))
    barrier = threading.Barrier(8)
    won: list[str] = []

    def contend(holder: str) -> None:
        barrier.wait()
        if leases.claim(engine, "race", holder, 60):
            won.append(holder)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1, won
    assert leases.holder_of(engine, "race") == won[0]


def test_two_periodic_scrubbers_scrub_once_per_interval_between_them(registry_server):
    settings = registry_server.settings.with_overrides(fsck_interval_s=0.2)
    first_ctx, second_ctx = Context.from_settings(settings), Context.from_settings(settings)
    first = fsck.start_periodic(first_ctx)
    assert first is not None
    try:
        wait_until(lambda: first.last_report, timeout=30, message="the first never scrubbed")
        second = fsck.start_periodic(second_ctx)
        assert second is not None
        try:
            wait_until(lambda: second.passes >= 5, timeout=30, message="second never ticked")
            # the first holds the lease and renews it: the second scrubbed not once
            assert second.skipped == second.passes and second.last_report is None
            assert first.skipped == 0
            assert leases.holder_of(first_ctx.engine, fsck.LEASE_NAME) == first.holder
            first.stop()  # a clean stop gives the lease up: the second scrubs next
            wait_until(lambda: second.last_report, timeout=30, message="the second never took over")
            assert leases.holder_of(second_ctx.engine, fsck.LEASE_NAME) == second.holder
        finally:
            second.stop()
    finally:
        first.stop()
        first_ctx.close()
        second_ctx.close()


def test_a_scrubber_that_stopped_without_a_word_is_replaced_once_its_lease_lapses(
    registry_server,
):
    settings = registry_server.settings.with_overrides(fsck_interval_s=0.3)
    first_ctx, second_ctx = Context.from_settings(settings), Context.from_settings(settings)
    first = fsck.start_periodic(first_ctx)
    assert first is not None
    second = None
    try:
        wait_until(lambda: first.last_report, timeout=30, message="the first never scrubbed")
        super(fsck.PeriodicFsck, first).stop()  # the thread ends, the lease is not released
        held_by, lapses_at = _lease_row(first_ctx)
        assert held_by == first.holder
        second = fsck.start_periodic(second_ctx)
        assert second is not None
        wait_until(lambda: second.last_report, timeout=30, message="no one took over")
        taken_by, lasts_until = _lease_row(second_ctx)
        assert taken_by == second.holder
        # it took the lease only once the first's had lapsed (its claim ran at or after
        # lapses_at, so its own lasts 1.5 intervals from then)
        lifetime = timedelta(seconds=0.3 * fsck.LEASE_INTERVALS)
        assert lasts_until - lifetime >= lapses_at
    finally:
        if second is not None:
            second.stop()
        first.stop()
        first_ctx.close()
        second_ctx.close()
