"""Connection limits of ``loreg serve`` (issue 9, item 9): idle and half-sent request
heads cannot pin the server; real requests keep answering.

A real ``loreg serve`` process (embedded mode) with a 3 s header timeout and a limit of
30 connections: 30 sockets that send nothing or half a request head fill it, a normal
request still answers 200 (the longest-idle socket makes room), and after the timeout
every silent or half-sent socket has been closed, also one that trickles its head in a
byte at a time.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.e2e.conftest import start_server, stop_process

HEADER_TIMEOUT = 3.0
LIMIT = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``loreg serve`` with the limits set through LOREG_* variables."""
    env = {
        "LOREG_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "LOREG_LIMIT_CONCURRENCY": str(LIMIT),
        "LOREG_KEEPALIVE_TIMEOUT": "2",
    }
    srv = start_server(tmp_path_factory.mktemp("limits") / "data", env=env)
    try:
        yield srv
    finally:
        stop_process(srv.process)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(max(within, 0.05))
    try:
        while sock.recv(4096):
            pass  # a 4xx the server may send before closing
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_idle_and_half_sent_connections_are_closed_and_do_not_lock_out(served):
    sockets = []
    try:
        for i in range(LIMIT):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            if i % 2:
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Half: ")
            sockets.append(sock)
        time.sleep(0.3)  # let the server register all of them

        started = time.monotonic()
        for _ in range(5):
            r = httpx.get(f"{served.url}/v1/health", timeout=10)
            assert r.status_code == 200, r.text
        assert time.monotonic() - started < HEADER_TIMEOUT, "real requests waited for idle ones"

        deadline = started + HEADER_TIMEOUT + 3.0
        still_open = [
            i
            for i, sock in enumerate(sockets)
            if not _closed_by_server(sock, deadline - time.monotonic())
        ]
        assert still_open == [], f"connections {still_open} were never closed"
        assert httpx.get(f"{served.url}/v1/health", timeout=10).status_code == 200
    finally:
        for sock in sockets:
            sock.close()


def test_a_request_head_trickling_in_is_cut_at_the_header_timeout(served):
    head = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        cut = False
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > HEADER_TIMEOUT + 3.0:
                break
        took = time.monotonic() - started
        assert cut or _closed_by_server(sock, 0.5), f"still open after {took:.1f} s"
    assert took < HEADER_TIMEOUT + 3.0


def test_keep_alive_connection_still_serves_several_requests(served):
    with httpx.Client(base_url=served.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/v1/health").status_code == 200
            time.sleep(0.5)
