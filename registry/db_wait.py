"""Waiting on a Postgres server with a deadline, for psycopg 3 and psycopg2 alike.

libpq cannot time out a read on its own, and ``statement_timeout`` is enforced by the
server, which may be the very thing that stopped answering (network down, packets
dropped). So connections made by :func:`registry.db.make_engine` wait on their socket
here: poll it with a deadline, and when the deadline passes shut the socket down (so
nothing waits on it again) and raise an ``OperationalError`` of the driver, which
SQLAlchemy treats as a disconnect.

* psycopg 3: :func:`psycopg_bounds` makes a ``psycopg.Connection`` whose
  ``wait`` (every query, commit, rollback and fetch goes through it) drives psycopg's
  I/O generator with the deadline. psycopg bounds the connection attempt itself with
  libpq's ``connect_timeout`` (:func:`libpq_connect_timeout`).
* psycopg2: :func:`psycopg2_bounds` registers a wait callback that polls with
  the connect bound while connecting and the silence bound afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import math
import select
import socket
import time
from collections.abc import Generator
from typing import Any

#: Connect bound for psycopg2 connections not made by a bounded connection class.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: What psycopg's I/O generators wait for and are told, as in ``selectors``.
_READ, _WRITE = 1, 2


def wait_socket(fd: int, wanted: int, deadline: float | None) -> int:
    """Wait until ``fd`` can be read and/or written (``wanted``: 1 read, 2 write, 3 both).

    Returns what it can do now (an error or hang-up counts as ready, so the driver
    meets it), or 0 when ``deadline`` (``time.monotonic()``) passed first.
    """
    events = (select.POLLIN if wanted & _READ else 0) | (select.POLLOUT if wanted & _WRITE else 0)
    poller = select.poll()
    poller.register(fd, events | select.POLLERR | select.POLLHUP)
    if deadline is None:
        ready = poller.poll()
    else:
        ready = poller.poll(max(deadline - time.monotonic(), 0.0) * 1000)
    if not ready:
        return 0
    got = ready[0][1]
    if got & (select.POLLERR | select.POLLHUP):
        return wanted
    return (_READ if got & select.POLLIN else 0) | (_WRITE if got & select.POLLOUT else 0)


def shut_down(fd: int) -> None:
    """Shut a socket down in both directions (the driver still owns and closes it)."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=socket.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def silence_timeout(connect_timeout: float, statement_timeout: float | None) -> float | None:
    """How long a server may stay silent: a statement's bound plus a connect's (None: no
    statement bound, e.g. migrations)."""
    return None if statement_timeout is None else statement_timeout + connect_timeout


def libpq_connect_timeout(seconds: float) -> int:
    """libpq's ``connect_timeout`` for a bound in seconds: whole seconds, at least 2
    (libpq and psycopg 3 treat smaller values as 2)."""
    return max(2, math.ceil(seconds))


# ---------------------------------------------------------------- psycopg 3


def psycopg_bounds(silence: float | None) -> tuple[type, type[Exception]]:
    """A ``psycopg.Connection`` class whose waits give up after ``silence`` seconds, and
    the error it raises then."""
    silent, base = _psycopg_classes()
    return type("BoundedConnection", (base,), {"loreg_silence_timeout": silence}), silent


@functools.cache
def _psycopg_classes() -> tuple[type, type]:
    import psycopg

    class PsycopgSilent(psycopg.OperationalError):
        """The database did not answer within the bound."""

    class SilenceBoundConnection(psycopg.Connection):
        """A psycopg 3 connection that waits on its server for a bounded time."""

        loreg_silence_timeout: float | None = None

        def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
            """psycopg's wait, with the silence bound unless the caller sets a timeout."""
            limit = self.loreg_silence_timeout
            if limit is None or kwargs.get("timeout") is not None:
                return super().wait(gen, *args, **kwargs)
            result: list[Any] = []
            if _drive(gen, self.pgconn.socket, limit, result):
                return result[0]
            # Broken, not closed: psycopg and SQLAlchemy see a lost connection, and
            # nothing tries to use (or reset) it again.
            shut_down(self.pgconn.socket)
            self.pgconn.finish()
            raise PsycopgSilent(f"the database did not answer within {limit:g} s")

    return PsycopgSilent, SilenceBoundConnection


def _drive(gen: Generator[int, int, Any], fd: int, limit: float, result: list[Any]) -> bool:
    """Run one of psycopg's I/O generators on ``fd``; False if ``limit`` seconds passed
    first, else True with the generator's value appended to ``result``."""
    deadline = time.monotonic() + limit
    try:
        wanted = next(gen)
        while ready := wait_socket(fd, wanted, deadline):
            wanted = gen.send(ready)
    except StopIteration as done:
        result.append(done.value)
        return True
    return False


# ---------------------------------------------------------------- psycopg2


def psycopg2_bounds(connect_timeout: float, silence: float | None) -> tuple[type, type[Exception]]:
    """Register the bounded wait callback; return a psycopg2 connection class carrying
    the bounds (a ``connection_factory``) and the error raised when one passes."""
    import psycopg2.extensions as pg_ext

    pg_ext.set_wait_callback(_psycopg2_wait)
    factory = type(
        "BoundedConnection",
        (pg_ext.connection,),
        {"loreg_connect_timeout": connect_timeout, "loreg_silence_timeout": silence},
    )
    return factory, _psycopg2_classes()[0]


@functools.cache
def _psycopg2_classes() -> tuple[type]:
    import psycopg2

    class Psycopg2Silent(psycopg2.OperationalError):
        """The database did not answer (or accept a connection) within the bound."""

    return (Psycopg2Silent,)


def _psycopg2_wait(conn: Any) -> None:
    """psycopg2 wait callback: poll the connection's socket, giving up at a deadline."""
    import psycopg2.extensions as pg_ext

    if conn.status == pg_ext.STATUS_SETUP:
        what, limit = "connect", getattr(conn, "loreg_connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    else:
        what, limit = "answer", getattr(conn, "loreg_silence_timeout", None)
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        state = conn.poll()
        if state == pg_ext.POLL_OK:
            return
        wanted = _READ if state == pg_ext.POLL_READ else _WRITE
        fd = conn.fileno()
        if not wait_socket(fd, wanted, deadline):
            shut_down(fd)  # so psycopg2's clean-up read fails at once instead of waiting
            raise _psycopg2_classes()[0](f"the database did not {what} within {limit:g} s")
