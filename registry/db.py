"""Database engine and sessions, with bounded waits on the database and outage detection.

Postgres connections made here never wait forever: a connection attempt gives up after
``connect_timeout`` seconds, the server cancels a statement after ``statement_timeout``
seconds, and a server that stops answering altogether (network down, packets dropped)
is given up on after ``statement_timeout + connect_timeout`` seconds of silence. libpq
cannot time out a read on its own, so the waiting is done by a psycopg2 wait callback
(:func:`_bounded_wait`) that polls the socket with a deadline and, when the deadline
passes, shuts the socket down so the connection fails instead of hanging.

:func:`database_unavailable` tells an outage (refused, dropped, timed out, shutting
down) from a bug, so the API answers 503 ``database_unavailable`` for the former.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.errors import DatabaseUnavailable

try:
    import psycopg2
    import psycopg2.extensions as pg_ext
except ImportError:  # pragma: no cover - embedded installs may lack the Postgres driver
    psycopg2 = pg_ext = None  # type: ignore[assignment]

#: Connect bound for psycopg2 connections not made by :func:`make_engine`'s factory.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: SQLite messages that mean "busy or unreachable", not a bug.
_SQLITE_OUTAGE = ("database is locked", "unable to open database file", "disk i/o error")


def make_engine(
    database_url: str,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    statement_timeout: float | None = None,
) -> Engine:
    """An engine for Postgres or SQLite (WAL, foreign keys, busy timeout on SQLite).

    On Postgres every wait is bounded (see the module docstring); ``statement_timeout``
    None means no statement bound (migrations), only the connect bound.
    """
    if database_url.startswith("sqlite"):
        engine = sa.create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {}
    bounded = sa.engine.make_url(database_url).get_driver_name() == "psycopg2"
    if bounded:
        connect_args["connection_factory"] = _install_bounded_wait(
            connect_timeout, statement_timeout
        )
    if statement_timeout is not None:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    engine = sa.create_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=max(connect_timeout, 1.0) * 2,
        connect_args=connect_args,
    )
    if bounded:

        @sa.event.listens_for(engine, "handle_error")
        def _silence_is_a_disconnect(context) -> None:
            if isinstance(context.original_exception, DatabaseSilent):
                context.is_disconnect = True

    return engine


def describe_database(url: sa.engine.URL | str) -> str:
    """A short, password-free name of a database, e.g. ``postgresql database 'loreg' at h:5432``."""
    url = sa.engine.make_url(url)
    kind = url.get_backend_name()
    if kind == "sqlite":
        return f"sqlite database {url.database or ':memory:'}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"{kind} database {url.database!r} at {where}"


def database_unavailable(
    exc: BaseException, url: sa.engine.URL | str, *, retry_after: int = 5
) -> DatabaseUnavailable | None:
    """The 503 error for ``exc`` when it means the database is down or too slow, else None.

    Outages: a refused, dropped or timed-out connection, a statement cancelled by the
    statement timeout, a server shutting down or starting up, an exhausted pool, and on
    SQLite a locked or unopenable file. Anything else (constraint violations, SQL
    errors) is a bug or a conflict and returns None.
    """
    outage = isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    )
    if not outage and isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        sqlite = sa.engine.make_url(url).get_backend_name() == "sqlite"
        outage = not sqlite or any(m in str(exc.orig).lower() for m in _SQLITE_OUTAGE)
    if not outage:
        return None
    orig = getattr(exc, "orig", None) or exc
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return DatabaseUnavailable(
        f"the {describe_database(url)} is unavailable ({reason[:300]}); retry later",
        retry_after=retry_after,
    )


# ---------------------------------------------------------------- bounded waiting

if psycopg2 is not None:

    class DatabaseSilent(psycopg2.OperationalError):
        """The database did not answer (or accept a connection) within the bound."""

else:  # pragma: no cover
    DatabaseSilent = None  # type: ignore[assignment,misc]


def _install_bounded_wait(connect_timeout: float, statement_timeout: float | None) -> type:
    """Register the bounded wait callback; return a connection class carrying the bounds."""
    pg_ext.set_wait_callback(_bounded_wait)
    silence = None if statement_timeout is None else statement_timeout + connect_timeout
    return type(
        "BoundedConnection",
        (pg_ext.connection,),
        {"loreg_connect_timeout": connect_timeout, "loreg_silence_timeout": silence},
    )


def _bounded_wait(conn: Any) -> None:
    """psycopg2 wait callback: poll the connection's socket, giving up at a deadline."""
    if conn.status == pg_ext.STATUS_SETUP:
        what, limit = "connect", getattr(conn, "loreg_connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    else:
        what, limit = "answer", getattr(conn, "loreg_silence_timeout", None)
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        state = conn.poll()
        if state == pg_ext.POLL_OK:
            return
        events = select.POLLIN if state == pg_ext.POLL_READ else select.POLLOUT
        fd = conn.fileno()
        poller = select.poll()
        poller.register(fd, events | select.POLLERR | select.POLLHUP)
        if deadline is None:
            poller.poll()
        elif not poller.poll(max(deadline - time.monotonic(), 0.0) * 1000):
            _shut_down(fd)  # so psycopg2's clean-up read fails at once instead of waiting
            raise DatabaseSilent(f"the database did not {what} within {limit:g} s")


def _shut_down(fd: int) -> None:
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=socket.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
