"""Postgres URLs as people write them (issue 10 §5), on a real server, with both drivers.

``postgresql://`` and ``postgres://`` connect with psycopg 3, ``postgresql+psycopg2://``
with psycopg2; either way the statement timeout is set on the server, migrations run,
a server that stops answering (a blackholed TCP proxy) fails a query, and then a new
connection, within the bounds instead of hanging, and a dropped connection is an outage
the engine heals from.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from registry import migrate
from registry.db import database_unavailable, make_engine
from registry.settings import Settings
from tests.support.servers import temp_pg_database
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 2.0
#: A silent pooled connection (statement + connect bound), one new connection attempt
#: (psycopg 3 rounds the connect bound up to libpq's 2 s minimum), slack for a busy box.
BLACKHOLE_BOUND = STATEMENT_TIMEOUT + CONNECT_TIMEOUT + 2.0 + 4.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the machine's Postgres, as ``postgresql://user@host:port/db``."""
    with temp_pg_database() as url:
        yield "postgresql://" + url.split("://", 1)[1]


def _with_scheme(url: str, scheme: str) -> str:
    return f"{scheme}://{url.split('://', 1)[1]}"


@contextmanager
def _proxied(pg_url: str, scheme: str) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of the database, and the database's URL through it."""
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        through = _with_scheme(pg_url, scheme).replace(host_port, f"127.0.0.1:{proxy.port}")
        yield proxy, Settings(data_dir="/unused", database_url=through).database_url


@pytest.mark.parametrize(
    ("scheme", "driver"),
    [
        ("postgresql", "psycopg"),
        ("postgres", "psycopg"),
        ("postgresql+psycopg", "psycopg"),
        ("postgresql+psycopg2", "psycopg2"),
    ],
)
def test_each_url_form_connects_with_its_driver(tmp_path, pg_url, scheme, driver):
    settings = Settings(data_dir=tmp_path, database_url=_with_scheme(pg_url, scheme))
    engine = make_engine(
        settings.database_url, connect_timeout=CONNECT_TIMEOUT, statement_timeout=STATEMENT_TIMEOUT
    )
    try:
        with engine.connect() as conn:
            assert conn.dialect.driver == driver
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "2s"
    finally:
        engine.dispose()


def test_migrations_run_on_a_plain_postgres_url(pg_url):
    migrate.upgrade(pg_url)
    engine = make_engine(Settings(data_dir="/unused", database_url=pg_url).database_url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"alembic_version", "api_tokens"} <= tables


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2"])
def test_a_blackholed_database_fails_in_bounded_time_and_heals(pg_url, scheme):
    with _proxied(pg_url, scheme) as (proxy, url):
        engine = make_engine(
            url, connect_timeout=CONNECT_TIMEOUT, statement_timeout=STATEMENT_TIMEOUT
        )
        try:
            with engine.connect() as conn:  # a pooled connection exists
                conn.execute(sa.text("SELECT 1"))

            proxy.blackhole()
            for _ in range(2):  # a pooled, then a new connection
                started = time.monotonic()
                with pytest.raises(sa.exc.DBAPIError) as info, engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                took = time.monotonic() - started
                assert took < BLACKHOLE_BOUND, f"took {took:.1f} s"
                outage = database_unavailable(info.value, url, retry_after=3)
                assert outage is not None, info.value
                assert f":{proxy.port}" in str(outage)

            proxy.restore()
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
        finally:
            engine.dispose()


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2"])
def test_a_dropped_database_connection_is_an_outage_and_heals(pg_url, scheme):
    with _proxied(pg_url, scheme) as (proxy, url):
        engine = make_engine(
            url, connect_timeout=CONNECT_TIMEOUT, statement_timeout=STATEMENT_TIMEOUT
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            proxy.cut()  # open connections dropped, new ones refused
            with pytest.raises(sa.exc.DBAPIError) as info, engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            assert database_unavailable(info.value, url) is not None, info.value
            proxy.restore()
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
        finally:
            engine.dispose()
