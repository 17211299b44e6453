"""Identical event-loop lookups queued for a connection share one statement, and a
lookup never takes the rows of a statement sent before it arrived.

On the machine's Postgres (psycopg 3), with :class:`registry.services.async_lookup.
AsyncLookup` driven directly on one event loop: the connections are kept busy by slow
statements so that later lookups have to queue, a row is changed and committed while
they do, and what each lookup answered is compared with the order of events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from registry.services.async_lookup import AsyncLookup
from registry.settings import Settings
from tests.support.servers import temp_pg_database

pytestmark = pytest.mark.integration

_cell = sa.table("cell", sa.column("v", sa.Integer))
#: what each lookup reads: the cell's value now (the snapshot of the statement's start)
READ = sa.select(_cell.c.v, sa.cast(sa.bindparam("key"), sa.Text))
#: holds a connection for ``seconds`` (a distinct ``tag`` keeps them from being shared)
HOLD = sa.select(sa.func.pg_sleep(sa.bindparam("seconds")), sa.cast(sa.bindparam("tag"), sa.Text))
#: reads the cell, then holds the connection: in flight long enough to race with
SLOW_READ = sa.select(_cell.c.v, sa.func.pg_sleep(sa.bindparam("seconds")))


@pytest.fixture
def setup() -> Iterator[tuple[AsyncLookup, sa.Engine]]:
    """An AsyncLookup and a sync engine on a fresh database holding ``cell(v) = 1``."""
    with temp_pg_database() as url:
        settings = Settings(data_dir="/unused", database_url="postgresql://" + url.split("://")[1])
        engine = sa.create_engine(settings.database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE cell (v integer)"))
            conn.execute(sa.text("INSERT INTO cell VALUES (1)"))
        lookup = AsyncLookup(settings, engine.dialect)
        try:
            yield lookup, engine
        finally:
            lookup.close()
            engine.dispose()


def _set(engine: sa.Engine, value: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE cell SET v = :v"), {"v": value})


def _counting(lookup: AsyncLookup) -> list[str]:
    """The SQL of every statement ``lookup`` sends from now on."""
    sent: list[str] = []
    original = lookup._attempt

    async def attempt(pool, conn, sql, params):
        sent.append(sql)
        return await original(pool, conn, sql, params)

    lookup._attempt = attempt  # type: ignore[method-assign]
    return sent


async def _busy(lookup: AsyncLookup, seconds: float, count: int) -> list[asyncio.Task]:
    """``count`` distinct statements holding connections, started and sent."""
    tasks = [
        asyncio.ensure_future(lookup.rows(HOLD, {"seconds": seconds, "tag": f"hold-{i}"}))
        for i in range(count)
    ]
    await asyncio.sleep(0.15)  # connected and sent
    return tasks


def test_identical_queued_lookups_share_one_statement(setup):
    lookup, engine = setup
    sent = _counting(lookup)

    async def scenario() -> list[list[tuple]]:
        holds = await _busy(lookup, 0.8, lookup.max_connections)
        waiting = [asyncio.ensure_future(lookup.rows(READ, {"key": "k"})) for _ in range(30)]
        other = asyncio.ensure_future(lookup.rows(READ, {"key": "other"}))
        await asyncio.sleep(0.05)
        _set(engine, 2)  # committed while all of them wait for a connection
        answers = await asyncio.gather(*waiting, other)
        await asyncio.gather(*holds)
        return answers

    answers = asyncio.run(scenario())
    # every one of them arrived before the statement was sent, so all see the commit
    assert answers == [[(2, "k")]] * 30 + [[(2, "other")]]
    reads = [sql for sql in sent if "cell" in sql]
    assert len(reads) == 2  # one for the 30 identical lookups, one for the other key
    assert len(sent) == lookup.max_connections + 2


def test_a_lookup_arriving_after_the_statement_was_sent_gets_a_new_one(setup):
    lookup, engine = setup
    sent = _counting(lookup)

    async def scenario() -> tuple[list, list, list]:
        holds = await _busy(lookup, 2.0, lookup.max_connections - 1)
        short = asyncio.ensure_future(lookup.rows(HOLD, {"seconds": 0.4, "tag": "short"}))
        await asyncio.sleep(0.05)
        # queued (every connection busy), sent when the short hold ends at ~0.4 s: it
        # reads v = 1, then keeps its connection until ~1.4 s
        first = asyncio.ensure_future(lookup.rows(SLOW_READ, {"seconds": 1.0}))
        await asyncio.sleep(0.75)
        _set(engine, 2)  # committed while first is in flight, before second arrives
        second = asyncio.ensure_future(lookup.rows(SLOW_READ, {"seconds": 1.0}))
        joined = asyncio.ensure_future(lookup.rows(SLOW_READ, {"seconds": 1.0}))
        results = await asyncio.gather(first, second, joined)
        await asyncio.gather(short, *holds)
        return results

    first, second, joined = asyncio.run(scenario())
    assert [row[0] for row in first] == [1]
    assert [row[0] for row in second] == [2]  # not first's rows: it arrived after they were read
    assert [row[0] for row in joined] == [2]  # queued with second, so it shares second's
    assert sum("cell" in sql for sql in sent) == 2


def test_a_waiter_cancelled_does_not_cancel_the_shared_statement(setup):
    lookup, _ = setup

    async def scenario() -> list[tuple]:
        holds = await _busy(lookup, 0.4, lookup.max_connections)
        leaving = asyncio.ensure_future(lookup.rows(READ, {"key": "k"}))
        staying = asyncio.ensure_future(lookup.rows(READ, {"key": "k"}))
        await asyncio.sleep(0.05)
        leaving.cancel()
        rows = await staying
        await asyncio.gather(*holds)
        assert leaving.cancelled()
        return list(rows)

    assert asyncio.run(scenario()) == [(1, "k")]


def test_a_shared_statement_that_fails_fails_every_waiter_with_a_503(setup):
    from registry.errors import DatabaseUnavailable

    lookup, _ = setup

    async def scenario() -> list[BaseException | list]:
        holds = await _busy(lookup, 0.8, lookup.max_connections)
        lookup._deadline = 0.3  # shorter than the holds: the queued statement times out
        waiting = [lookup.rows(READ, {"key": "k"}) for _ in range(5)]
        outcome = await asyncio.gather(*waiting, return_exceptions=True)
        await asyncio.gather(*holds, return_exceptions=True)
        return outcome

    outcome = asyncio.run(scenario())
    assert all(isinstance(o, DatabaseUnavailable) for o in outcome), outcome
    assert "no answer in time" in str(outcome[0])
