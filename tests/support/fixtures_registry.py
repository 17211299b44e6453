"""pytest fixtures: the registry served over HTTP on both backends.

``registry_server`` is parametrized: ``postgres_s3`` (real Postgres, the real
moto_server S3 endpoint over HTTP) and ``sqlite_local`` (SQLite + LocalStore).
Override the ``registry_settings_overrides`` fixture (a dict of
:class:`registry.settings.Settings` fields, empty by default) in a test module to
change the server's settings, e.g. the multipart threshold.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.support.servers import RunningRegistry, ServerThread, temp_pg_database

BACKENDS = ["sqlite_local", "postgres_s3"]


def make_settings(backend: str, tmp_path, stack: ExitStack, s3_endpoint: str | None):
    """Settings for a fresh registry on ``backend`` (a new database and bucket)."""
    from registry.settings import Settings

    data_dir = tmp_path / f"registry-{uuid.uuid4().hex[:6]}"
    if backend == "sqlite_local":
        return Settings(
            data_dir=data_dir,
            database_url=f"sqlite:///{data_dir / 'loreg.db'}",
            secret_key=secrets.token_hex(16),
        )
    # psycopg 3, the default driver of a deployment (tests/integration/test_postgres_drivers.py
    # covers psycopg2)
    db_url = stack.enter_context(temp_pg_database()).replace("+psycopg2://", "+psycopg://")
    return Settings(
        data_dir=data_dir,
        database_url=db_url,
        s3_bucket=f"loreg-test-{uuid.uuid4().hex[:12]}",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_trust_checksums=False,  # moto stores client-claimed checksums unverified
        secret_key=secrets.token_hex(16),
    )


@pytest.fixture
def registry_settings_overrides() -> dict:
    """Settings fields the ``registry_server`` fixture replaces; override to change them."""
    return {}


@pytest.fixture(params=BACKENDS)
def registry_server(request, tmp_path, registry_settings_overrides) -> Iterator[RunningRegistry]:
    """A running registry (fresh database and store) on each backend."""
    from registry.app import create_app
    from registry.serve import prepare

    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "postgres_s3" else None
    with ExitStack() as stack:
        settings = make_settings(request.param, tmp_path, stack, endpoint)
        overrides = {
            **(getattr(request, "param_overrides", None) or {}),
            **registry_settings_overrides,
        }
        if overrides:
            settings = settings.with_overrides(**overrides)
        ctx, token = prepare(settings)
        stack.callback(ctx.close)  # engines, and the job executor (its child process)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        yield RunningRegistry(
            url=server.url, admin_token=token, settings=settings, ctx=ctx, backend=request.param
        )
