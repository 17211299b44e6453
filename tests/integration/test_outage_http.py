"""HTTP-level robustness (issue 9): chunked bodies over the limit (item 8) and 500s
that keep the keep-alive connection open (item 16), on a real uvicorn server."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ServerThread

JSON_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(url, admin token) of an embedded registry with a 64 KiB JSON limit and two routes
    that fail on purpose (a sync and an async one)."""
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    folder = tmp_path_factory.mktemp("http")
    settings = Settings(
        data_dir=folder,
        database_url=f"sqlite:///{folder / 'loreg.db'}",
        secret_key=secrets.token_hex(16),
        max_json_body_bytes=JSON_LIMIT,
    )
    ctx, token = prepare(settings)
    app = create_app(context=ctx)

    def broken_sync() -> dict:
        raise RuntimeError("a bug in a sync route")

    async def broken_async() -> dict:
        raise ZeroDivisionError("a bug in an async route")

    app.add_api_route("/test/broken-sync", broken_sync)
    app.add_api_route("/test/broken-async", broken_async)
    try:
        with ServerThread(app) as running:
            yield running.url, token
    finally:
        ctx.engine.dispose()


# --- item 8: a chunked body over the JSON limit is a 413 naming the limit ------------------


def test_chunked_json_body_over_the_limit_is_413(server):
    url, token = server

    def body() -> Iterator[bytes]:
        yield b'{"name": "x", "description": "'
        for _ in range(8):
            yield b"a" * 16 * 1024  # 128 KiB in all, no Content-Length: sent chunked
        yield b'"}'

    r = httpx.post(
        f"{url}/v1/uploads",
        content=body(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "payload_too_large"
    assert str(JSON_LIMIT) in error["message"], error


def test_chunked_json_body_under_the_limit_still_parses(server):
    url, token = server
    body = json.dumps({"name": "x"}).encode()
    r = httpx.post(
        f"{url}/v1/uploads",
        content=iter([body[:5], body[5:]]),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 422, r.text  # the schema's answer (no files), not 400 or 413
    assert r.json()["error"]["code"] == "invalid_request"


# --- item 16: an unexpected error answers 500 JSON and keeps the connection open ----------


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the body")
        rest += chunk
    return status, headers, rest[:length]


@pytest.mark.parametrize("path", ["/test/broken-sync", "/test/broken-async"])
def test_a_500_keeps_the_keep_alive_connection(server, path):
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, body = _read_response(sock)
        assert status == 500
        assert headers.get("connection", "").lower() != "close"
        error = json.loads(body)["error"]
        assert error["code"] == "internal" and "see server log" in error["message"]
        # the same connection answers the next request
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = _read_response(sock)
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"


# --- item 1: health reports the broker when one is configured -----------------------------


@pytest.mark.parametrize("broker_up", [True, False])
def test_health_reports_the_broker(tmp_path, broker_up):
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings
    from tests.support.s3server import free_port

    port = 6379 if broker_up else free_port()  # the machine's Redis, or nothing listening
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'loreg.db'}",
        secret_key=secrets.token_hex(16),
        redis_url=f"redis://127.0.0.1:{port}/0",
    )
    ctx, _ = prepare(settings)
    try:
        with ServerThread(create_app(context=ctx)) as running:
            r = httpx.get(f"{running.url}/v1/health", timeout=30)
    finally:
        ctx.engine.dispose()
    if broker_up:
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["broker"]["status"] == "ok"
        return
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "broker_unavailable"
    assert f"redis at 127.0.0.1:{port}" in error["message"]
    checks = error["details"]["checks"]
    assert checks["broker"]["status"] == "unavailable"
    assert checks["database"]["status"] == checks["store"]["status"] == "ok"
