"""A loopback HTTP/1.1 relay that drops one download halfway: a real interrupted transfer.

Clients connect to ``proxy.url``; bytes are relayed to the target. The first ``GET``
whose request line contains ``marker`` has its connection closed after
``cut_after`` bytes of the answer were relayed; later requests pass untouched. Every
request head the client sent is kept in ``requests`` (so a test can see the
``Range`` header of the resumed request).
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.s3server import free_port

BUFFER = 64 * 1024


class CuttingProxy:
    """Relays ``127.0.0.1:<port>`` to ``target``; cuts one matching download once."""

    def __init__(self, target_host: str, target_port: int, marker: str, cut_after: int) -> None:
        self.target = (target_host, target_port)
        self.marker = marker.encode()
        self.cut_after = cut_after
        self.port = free_port()
        self.requests: list[str] = []
        self.cuts = 0
        self._armed = True
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CuttingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=30)
            state = {"budget": None}  # bytes of answer left before the cut, once armed
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        """Client → server: record request heads; arm the cut on the first matching GET."""
        pending = b""
        try:
            while data := client.recv(BUFFER):
                pending += data
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    self.requests.append(head.decode("latin-1"))
                    line = head.split(b"\r\n", 1)[0]
                    with self._lock:
                        if self._armed and line.startswith(b"GET ") and self.marker in line:
                            self._armed = False
                            state["budget"] = self.cut_after
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        """Server → client: relay; close both sides once the armed budget is spent."""
        try:
            while data := upstream.recv(BUFFER):
                budget = state["budget"]
                if budget is not None:
                    if len(data) >= budget:
                        client.sendall(data[:budget])
                        self.cuts += 1
                        return
                    state["budget"] = budget - len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def range_requests(self) -> list[str]:
        """The ``Range`` header values the client sent, in order."""
        out = []
        for head in self.requests:
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "range":
                    out.append(value.strip())
        return out


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
