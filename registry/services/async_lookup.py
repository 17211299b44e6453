"""The resolve lookup on the event loop: psycopg 3 async connections, no thread hop.

A resolve is one short statement; sending it from a worker thread costs more than the
statement itself (measured in docs/benchmarks.md). On Postgres with the psycopg 3
driver, the hot path sends it on an ``AsyncConnection`` instead, from a small pool
owned by the process's event loop. Everything else keeps the sync engine.

Waits are bounded as on the sync engine: a connection attempt by libpq's
``connect_timeout``, a statement by the server's ``statement_timeout``, and silence
by a deadline on the whole exchange (statement plus connect bound), after which the
connection is closed. A pooled connection found dead is dropped and the statement
sent once more on a new one, so the first resolve after a database restart works.
Every failure to reach the database is a :class:`~registry.errors.DatabaseUnavailable`
(503), with the message the sync path gives.

Under load, identical lookups waiting for a connection share one statement: the first
one to queue sends it when a connection frees up, and every identical lookup that
arrived before then gets its rows. The statement still starts after each of them
arrived, so each sees every write committed before its request came in (a moved alias
included); a lookup that finds the statement already sent waits for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from registry.db import describe_database
from registry.db_wait import libpq_connect_timeout, silence_timeout
from registry.errors import DatabaseUnavailable
from registry.settings import Settings

#: ``application_name`` of these connections (``pg_stat_activity`` shows it).
APPLICATION_NAME = "loreg-resolve"


@dataclass
class _LoopPool:
    """The idle connections of one event loop, and the slots bounding how many exist."""

    idle: list[Any]
    slots: asyncio.Semaphore
    #: lookups queued for a connection and not sent yet, by (SQL, parameters): an
    #: identical lookup arriving now joins one instead of sending its own statement
    queued: dict[Hashable, asyncio.Future[list[tuple]]] = field(default_factory=dict)


class AsyncLookup:
    """Run compiled read statements on pooled psycopg ``AsyncConnection`` objects."""

    def __init__(self, settings: Settings, dialect: sa.Dialect):
        self._settings = settings
        self._dialect = dialect
        #: connections this process opens at most (the rest of the lookups queue)
        self.max_connections = settings.resolve_connections
        url = sa.engine.make_url(settings.database_url)
        self._url = url
        self._label = describe_database(url)
        statement_ms = int(settings.db_statement_timeout_s * 1000)
        self._connect_args: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
            "connect_timeout": libpq_connect_timeout(settings.db_connect_timeout_s),
            "options": f"-c statement_timeout={statement_ms}",
            "autocommit": True,
            "application_name": APPLICATION_NAME,
            **{k: v for k, v in url.query.items() if isinstance(v, str)},
        }
        self._deadline = silence_timeout(
            settings.db_connect_timeout_s, settings.db_statement_timeout_s
        )
        # connections belong to the event loop that made them (one loop per process in a
        # server; tests may run several): a pool per loop, dropped with its loop
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )
        self._compiled: dict[int, tuple[str, dict[str, Any]]] = {}

    def _sql(self, statement: sa.Select) -> tuple[str, dict[str, Any]]:
        """The statement as the driver's SQL text and its literal parameters (cached)."""
        key = id(statement)
        found = self._compiled.get(key)
        if found is None:
            compiled = statement.compile(dialect=self._dialect)
            found = self._compiled[key] = (str(compiled), dict(compiled.params))
        return found

    async def _connect(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(**self._connect_args)

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _LoopPool([], asyncio.Semaphore(self.max_connections))
        return pool

    def close(self) -> None:
        """Close every idle connection (of every loop) now."""
        for pool in list(self._pools.values()):
            while pool.idle:
                self._close_soon(pool.idle.pop())

    @staticmethod
    def _close_soon(conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.pgconn.finish()  # drop the socket now, without a round trip

    async def _attempt(
        self, pool: _LoopPool, conn: Any, sql: str, params: dict[str, Any]
    ) -> list[tuple]:
        """Run the statement on ``conn``; pool it again after, close it on any failure
        (a cancelled wait leaves it mid-exchange)."""
        try:
            cursor = conn.cursor()
            await cursor.execute(sql, params)
            rows = list(await cursor.fetchall())
        except BaseException:
            self._close_soon(conn)
            raise
        if not conn.closed:
            pool.idle.append(conn)
        return rows

    async def rows(self, statement: sa.Select, params: dict[str, Any]) -> Sequence[tuple]:
        """The rows of ``statement`` with ``params`` (503 when the database is unreachable).

        With a connection free, the statement is sent at once. Otherwise the lookup
        queues, sharing a statement not sent yet with the identical lookups queued
        before it (see the module's docstring). Callers must not modify the rows.
        """
        sql, literals = self._sql(statement)
        values = {**literals, **params}
        pool = self._pool()
        if not pool.slots.locked():
            return await self._send(pool, sql, values)
        key = (sql, tuple(sorted(values.items())))
        queued = pool.queued.get(key)
        if queued is None:
            queued = asyncio.ensure_future(self._send(pool, sql, values, queued_as=key))
            queued.add_done_callback(_retrieved)  # its error is logged by no one if all left
            pool.queued[key] = queued
        # shielded: one waiter going away (its request cancelled) does not cancel the
        # statement the others wait on; the statement's own deadline still bounds it
        return await asyncio.shield(queued)

    async def _send(
        self,
        pool: _LoopPool,
        sql: str,
        values: dict[str, Any],
        queued_as: Hashable | None = None,
    ) -> list[tuple]:
        """Take a connection (waiting for one under the deadline) and run the statement;
        from the moment it has one, a queued statement takes no more joiners."""
        import psycopg

        try:
            async with asyncio.timeout(self._deadline), pool.slots:
                if queued_as is not None:
                    del pool.queued[queued_as]
                    queued_as = None
                if pool.idle:
                    try:
                        return await self._attempt(pool, pool.idle.pop(), sql, values)
                    except psycopg.OperationalError:
                        pass  # it died while idle (the server restarted): once more, fresh
                return await self._attempt(pool, await self._connect(), sql, values)
        except TimeoutError as exc:
            raise self._unavailable("no answer in time") from exc
        except psycopg.OperationalError as exc:
            raise self._unavailable(_first_line(exc)) from exc
        finally:
            if queued_as is not None:  # failed before it had a connection
                pool.queued.pop(queued_as, None)

    def _unavailable(self, reason: str) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"the {self._label} is unavailable ({reason[:300]}); retry later",
            retry_after=self._settings.retry_after_s,
        )


def _retrieved(done: asyncio.Future[Any]) -> None:
    """Mark a shared statement's outcome as seen (the waiters raise it themselves)."""
    if not done.cancelled():
        done.exception()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def async_lookup_for(settings: Settings, dialect: sa.Dialect) -> AsyncLookup | None:
    """The async lookup for a Postgres database on the psycopg 3 driver, else None."""
    url = sa.engine.make_url(settings.database_url)
    if url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg":
        return None
    return AsyncLookup(settings, dialect)
