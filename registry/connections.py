"""Connection limits for ``loreg serve``: a header timeout and eviction of idle connections.

uvicorn closes a keep-alive connection that stays silent after a response
(``timeout_keep_alive``) and answers 503 past ``limit_concurrency``, but it never
closes a connection that was opened and left silent, or that sends half a request
head and stops: 200 of those pin 200 sockets forever, and with a concurrency limit
they also turn every real request into a 503.

:func:`guarded_protocol` builds an h11 protocol class that adds:

* a header timeout: from the moment a connection can start a request (it was opened,
  or the first byte of the next request arrived after a response) the request line
  and headers must be complete within ``header_timeout`` seconds, however slowly they
  trickle in; otherwise the connection is closed;
* eviction: when a new connection would reach ``limit_concurrency``, the connections
  that have been waiting longest for a request head are closed first, so idle
  sockets cannot lock real clients out. Connections serving a request are never
  evicted; if all are busy, uvicorn answers 503 as before.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and idle eviction (see the module)."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_since = time.monotonic()

    # -- state ----------------------------------------------------------------------

    def waiting_for_request(self) -> bool:
        """True while no request is being served: idle, or its head is still arriving."""
        if self.transport is None or self.transport.is_closing():
            return False
        serving = self.cycle is not None and not self.cycle.response_complete
        return not serving and self.conn.their_state is h11.IDLE

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.waiting_for_request():
            self._close_idle()

    def _close_idle(self) -> None:
        self._disarm_header_timer()
        self._unset_keepalive_if_required()
        if not self.transport.is_closing():
            self.transport.close()

    # -- uvicorn hooks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register the connection, start its header timer, evict idle ones if full."""
        super().connection_made(transport)
        self._waiting_since = time.monotonic()
        self._arm_header_timer()
        self._evict_idle()

    def _evict_idle(self) -> None:
        limit = self.limit_concurrency
        if limit is None or len(self.connections) < limit:
            return
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and c.waiting_for_request()
        ]
        idle.sort(key=lambda c: c._waiting_since)
        for victim in idle[: len(self.connections) - limit + 1]:
            victim._close_idle()
            self.connections.discard(victim)

    def data_received(self, data: bytes) -> None:
        """Feed h11; the first byte of a request head (re)starts the header timer."""
        if self.waiting_for_request():
            self._arm_header_timer()
        super().data_received(data)
        if not self.waiting_for_request():
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        """Back to waiting: uvicorn's keep-alive timer covers the silence until next bytes."""
        self._waiting_since = time.monotonic()
        super().on_response_complete()
        if not self.waiting_for_request():
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._disarm_header_timer()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with this header timeout (uvicorn ``http=``)."""
    if header_timeout <= 0:
        raise ValueError(f"header_timeout must be > 0 seconds, got {header_timeout}")
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})
