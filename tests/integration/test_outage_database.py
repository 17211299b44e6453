"""Database outages answer 503 ``database_unavailable`` and heal (issue 9, item 1).

A Postgres cluster of the test's own (never the machine's) is crashed with
``pg_ctl stop -m immediate`` and started again; a TCP proxy in front of it drops
everything (a blackholed network) to show a request fails in bounded time.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
import sqlalchemy as sa

from tests.support.pgcluster import PgCluster, postgres_bin_dir
from tests.support.servers import ServerThread
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.skipif(postgres_bin_dir() is None, reason="no Postgres binaries")

CONNECT_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 2.0
#: A request against a blackholed database: one silent pooled connection (statement +
#: connect timeout), one connection attempt (connect timeout), and slack for a busy box.
BLACKHOLE_BOUND = STATEMENT_TIMEOUT + 2 * CONNECT_TIMEOUT + 4.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """The test's own Postgres cluster, running."""
    pg = PgCluster()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


def _serve(stack: ExitStack, tmp_path, database_url: str) -> tuple[str, str]:
    """A registry on ``database_url`` + a local store; (url, admin token)."""
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    settings = Settings(
        data_dir=tmp_path / f"registry-{uuid.uuid4().hex[:6]}",
        database_url=database_url,
        secret_key=secrets.token_hex(16),
        db_connect_timeout_s=CONNECT_TIMEOUT,
        db_statement_timeout_s=STATEMENT_TIMEOUT,
        retry_after_s=3,
        # every request checks its token in the database (no cached principal), so
        # /v1/whoami is a request that needs the database
        token_cache_s=0,
    )
    ctx, token = prepare(settings)
    stack.callback(ctx.engine.dispose)
    server = stack.enter_context(ServerThread(create_app(context=ctx)))
    return server.url, token


@pytest.fixture(params=["psycopg2", "psycopg"])
def driver(request) -> str:
    """Each test runs on both drivers: psycopg 3 (the default; the resolve lookup then
    runs on the event loop, registry.services.async_lookup) and psycopg2."""
    return request.param


def _new_database(cluster: PgCluster, driver: str, host_port: str | None = None) -> str:
    name = f"outage_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"postgresql+{driver}://postgres@{host_port or f'127.0.0.1:{cluster.port}'}/{name}"


def _assert_database_unavailable(r: httpx.Response, port: int) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "database_unavailable", error
    assert "postgresql database" in error["message"] and f":{port}" in error["message"], error
    assert r.headers["Retry-After"] == "3"


def test_database_crash_answers_503_then_heals(cluster, tmp_path, driver):
    with ExitStack() as stack:
        url, token = _serve(stack, tmp_path, _new_database(cluster, driver))
        api = stack.enter_context(
            httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        )
        assert api.get("/v1/namespaces").status_code == 200
        health = api.get("/v1/health")
        assert health.status_code == 200 and health.json()["checks"]["database"]["status"] == "ok"

        cluster.crash()
        try:
            _assert_database_unavailable(api.get("/v1/namespaces"), cluster.port)
            _assert_database_unavailable(api.get("/v1/whoami"), cluster.port)
            # the resolve hot path (its own engine, no pre-ping) too
            _assert_database_unavailable(api.get("/v1/resolve/default/nothing"), cluster.port)
            health = api.get("/v1/health")
            assert health.status_code == 503, health.text
            assert health.headers["Retry-After"] == "3"
            error = health.json()["error"]
            assert error["code"] == "database_unavailable"
            assert "postgresql database" in error["message"]
            body = error["details"]
            assert body["status"] == "unavailable"
            assert body["checks"]["database"]["status"] == "unavailable"
            assert "postgresql database" in body["checks"]["database"]["error"]
            assert body["checks"]["store"]["status"] == "ok"
        finally:
            cluster.start()

        # the API heals by itself: the very next request works
        assert api.get("/v1/namespaces").status_code == 200
        assert api.get("/v1/whoami").json()["authenticated"] is True
        missing = api.get("/v1/resolve/default/nothing")  # the database answers again
        assert missing.status_code == 404 and "nothing" in missing.text, missing.text
        health = api.get("/v1/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"


def test_resolve_after_a_database_restart_works_first_time(cluster, tmp_path, driver):
    """The hot path's engine sends no pre-ping: a pooled connection that died with the
    server is dropped and the statement sent again, so the first resolve after the
    database came back answers (here 404), not 503."""
    with ExitStack() as stack:
        url, token = _serve(stack, tmp_path, _new_database(cluster, driver))
        api = stack.enter_context(
            httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        )
        assert api.get("/v1/resolve/default/nothing").status_code == 404  # pools a connection
        cluster.crash()
        cluster.start()
        missing = api.get("/v1/resolve/default/nothing")
        assert missing.status_code == 404 and "nothing" in missing.text, missing.text


def test_blackholed_database_fails_in_bounded_time(cluster, tmp_path, driver):
    with ExitStack() as stack:
        proxy = stack.enter_context(TcpProxy("127.0.0.1", cluster.port))
        url, token = _serve(
            stack, tmp_path, _new_database(cluster, driver, f"127.0.0.1:{proxy.port}")
        )
        api = stack.enter_context(
            httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"})
        )
        assert api.get("/v1/namespaces").status_code == 200  # pooled connections exist
        assert api.get("/v1/resolve/default/nothing").status_code == 404  # the hot path's too

        proxy.blackhole()
        paths = (
            "/v1/namespaces",
            "/v1/namespaces",
            "/v1/resolve/default/x",
            "/v1/resolve/default/x",
        )
        for path in paths:  # each: a pooled, then a new connection
            started = time.monotonic()
            r = api.get(path)
            took = time.monotonic() - started
            _assert_database_unavailable(r, proxy.port)
            assert took < BLACKHOLE_BOUND, f"{path} took {took:.1f} s"
        started = time.monotonic()
        health = api.get("/v1/health")
        assert health.status_code == 503, health.text
        assert health.json()["error"]["details"]["checks"]["database"]["status"] == "unavailable"
        assert time.monotonic() - started < BLACKHOLE_BOUND

        proxy.restore()
        assert api.get("/v1/namespaces").status_code == 200
        assert api.get("/v1/health").status_code == 200
