"""A loopback TCP forwarder that can be cut and restored: a real network outage for tests.

Clients connect to ``proxy.url``; bytes are relayed to the target. ``cut()``
closes the listening socket and every relayed connection, so new connections
are refused (as when a service is down); ``restore()`` listens again on the same
port. ``blackhole()`` is the nastier outage of a network that drops packets: the
proxy keeps accepting connections and reading what clients send, but forwards nothing
either way, so a client waits for an answer that never comes; ``restore()`` ends it
(connections opened or starved meanwhile are closed, as their streams lost bytes).
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.s3server import free_port

BUFFER = 256 * 1024


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._blackholed = threading.Event()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> TcpProxy:
        """Start (or resume) accepting and forwarding connections."""
        if self._blackholed.is_set():
            self._blackholed.clear()
            with self._lock:
                conns, self._conns = self._conns, set()
            for conn in conns:
                _close(conn)
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def blackhole(self) -> None:
        """Keep accepting and reading, forward nothing: answers stop without a refusal."""
        self._blackholed.set()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            _close(listener)
        for conn in conns:
            _close(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            if self._blackholed.is_set():
                with self._lock:
                    self._conns.add(client)
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while data := src.recv(BUFFER):
                if dst is not None and not self._blackholed.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (src, dst) if dst is not None else (src,):
                with self._lock:
                    self._conns.discard(conn)
                _close(conn)

    def __enter__(self) -> TcpProxy:
        return self.restore()

    def __exit__(self, *exc: object) -> None:
        self.cut()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
