"""The stdlib blob GET path: blocks, redirects, error mapping, truncated bodies."""

from __future__ import annotations

import http.server
import json
import os
import threading

import httpx
import pytest

from loreg.errors import NotFoundError, ServerError
from loreg.fastget import iter_blocks

BODY = os.urandom(3 * 1024 * 1024 + 17)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path.startswith("/blob"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/blob?x=1")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/missing":
            body = json.dumps({"error": {"code": "not_found", "message": "no such blob"}}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/broken":
            self.send_response(500)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"oops")
        elif self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:1000])
            self.wfile.flush()
            self.connection.close()


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_blocks_reassemble_the_body(server):
    blocks = list(iter_blocks(server + "/blob", timeout=10, block_size=1024 * 1024))
    assert [len(b) for b in blocks[:-1]] == [1024 * 1024] * 3
    assert b"".join(blocks) == BODY


def test_redirects_are_followed(server):
    assert b"".join(iter_blocks(server + "/moved", timeout=10, block_size=2**20)) == BODY


def test_error_answers_map_to_typed_errors(server):
    with pytest.raises(NotFoundError, match="no such blob"):
        list(iter_blocks(server + "/missing", timeout=10, block_size=2**20))
    with pytest.raises(ServerError):
        list(iter_blocks(server + "/broken", timeout=10, block_size=2**20))


def test_truncated_body_is_a_transport_error(server):
    with pytest.raises(httpx.TransportError):
        list(iter_blocks(server + "/short", timeout=10, block_size=2**20))


def test_unreachable_host_is_a_transport_error():
    with pytest.raises(httpx.TransportError):
        list(iter_blocks("http://127.0.0.1:9/blob", timeout=2, block_size=2**20))
