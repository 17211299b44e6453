"""Database engine and sessions, with bounded waits on the database and outage detection.

Postgres connections made here never wait forever: a connection attempt gives up after
``connect_timeout`` seconds, the server cancels a statement after ``statement_timeout``
seconds, and a server that stops answering altogether (network down, packets dropped)
is given up on after ``statement_timeout + connect_timeout`` seconds of silence. libpq
cannot time out a read on its own, so the waiting is done in :mod:`registry.db_wait`
(psycopg 3, the default driver, and psycopg2 for ``postgresql+psycopg2://`` URLs).

:func:`database_unavailable` tells an outage (refused, dropped, timed out, shutting
down) from a bug, so the API answers 503 ``database_unavailable`` for the former.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.db_wait import (
    DEFAULT_CONNECT_TIMEOUT,
    libpq_connect_timeout,
    psycopg2_bounds,
    psycopg_bounds,
    silence_timeout,
)
from registry.errors import DatabaseUnavailable

#: SQLite messages that mean "busy or unreachable", not a bug.
_SQLITE_OUTAGE = ("database is locked", "unable to open database file", "disk i/o error")


def make_engine(
    database_url: str,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    statement_timeout: float | None = None,
    hot_path: bool = False,
) -> Engine:
    """An engine for Postgres or SQLite (WAL, foreign keys, busy timeout on SQLite).

    On Postgres every wait is bounded (see the module docstring); ``statement_timeout``
    None means no statement bound (migrations), only the connect bound. ``hot_path``
    makes the engine of single-statement reads: autocommit (no BEGIN/ROLLBACK round
    trips) and no pre-ping (its caller retries once on a dropped connection).
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
    driver = sa.engine.make_url(database_url).get_driver_name()
    silence = silence_timeout(connect_timeout, statement_timeout)
    connection_class: type | None = None
    silent: type[Exception] | None = None
    if driver == "psycopg":
        connection_class, silent = psycopg_bounds(silence)
        connect_args["connect_timeout"] = libpq_connect_timeout(connect_timeout)
    elif driver == "psycopg2":
        connect_args["connection_factory"], silent = psycopg2_bounds(connect_timeout, silence)
    if statement_timeout is not None:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    engine = sa.create_engine(
        database_url,
        pool_pre_ping=not hot_path,
        pool_size=10,
        max_overflow=20,
        pool_timeout=max(connect_timeout, 1.0) * 2,
        connect_args=connect_args,
        **({"isolation_level": "AUTOCOMMIT"} if hot_path else {}),
    )
    if connection_class is not None:

        @sa.event.listens_for(engine, "do_connect")
        def _bounded_connect(_dialect, _record, cargs, cparams):
            return connection_class.connect(*cargs, **cparams)

    if silent is not None:

        @sa.event.listens_for(engine, "handle_error")
        def _silence_is_a_disconnect(context) -> None:
            if isinstance(context.original_exception, silent):
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
