"""A scripted HTTP peer on a real loopback socket, for client tests that need real HTTP.

``Peer`` answers each request with the next scripted answer for its path prefix
(the last one repeats), serves blobs with ``Range`` support, and logs every
request (method, path, headers, bytes of body sent). It is a test HTTP server,
not a fake of the registry's logic: tests script exactly what it answers.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Answer:
    """One scripted answer."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, code: str, message: str, retry_after: str | None = None, **extra):
        """An answer in the registry's error shape."""
        error: dict[str, Any] = {"code": code, "message": message}
        if extra:
            error["details"] = extra
        headers = {"Content-Type": "application/json"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return cls(status, json.dumps({"error": error}).encode(), headers)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Answer:
        """A JSON answer."""
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


@dataclass
class Logged:
    """One request the peer received."""

    method: str
    path: str
    headers: dict[str, str]
    sent: int = 0


class Peer:
    """The HTTP server; ``script`` maps a path prefix to a list of answers."""

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.blobs: dict[str, bytes] = {}
        self.honour_range = True
        self.cut_after: int | None = None  # close blob bodies after this many bytes
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                entry = Logged(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                with peer._lock:
                    peer.log.append(entry)
                path = self.path.split("?", 1)[0]
                if path.startswith("/blob/"):
                    peer._serve_blob(self, path[len("/blob/") :], entry)
                    return
                answer = peer._next(path)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _next(self, path: str) -> Answer:
        with self._lock:
            for prefix in sorted(self.script, key=len, reverse=True):
                if path.startswith(prefix):
                    answers = self.script[prefix]
                    return answers.pop(0) if len(answers) > 1 else answers[0]
        return Answer.error(404, "not_found", f"no route {path}")

    def _serve_blob(
        self, handler: http.server.BaseHTTPRequestHandler, name: str, entry: Logged
    ) -> None:
        data = self.blobs.get(name)
        if data is None:
            body = (
                b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code>"
                b"<Message>The specified key does not exist.</Message></Error>"
            )
            handler.send_response(404)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", entry.headers.get("range", ""))
        if match and self.honour_range and int(match.group(1)) < len(data):
            start = int(match.group(1))
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        body = data[start:]
        if self.cut_after is not None:
            body = body[: self.cut_after]
        handler.wfile.write(body)
        entry.sent = len(body)
        if self.cut_after is not None:
            handler.wfile.flush()
            handler.close_connection = True

    def requests(self, prefix: str = "") -> list[Logged]:
        """Logged requests whose path starts with ``prefix``."""
        return [e for e in self.log if e.path.startswith(prefix)]

    def __enter__(self) -> Peer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="peer")
def peer_fixture() -> Iterator[Peer]:
    """A running :class:`Peer`."""
    with Peer() as running:
        yield running
