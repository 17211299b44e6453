"""Test servers: a throw-away Postgres database and an in-process uvicorn registry."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from tests.support.waiting import wait_until

PG_ADMIN_URL = os.environ.get(
    "LOREG_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def temp_pg_database() -> Iterator[str]:
    """Create a uniquely named Postgres database; drop it afterwards. Yields its URL."""
    name = f"loreg_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class ServerThread:
    """Run an ASGI app with uvicorn on a loopback port in a background thread."""

    def __init__(self, app, host: str = "127.0.0.1"):
        import uvicorn

        from registry.serve import listening_socket

        self.sock = listening_socket(host, 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(
            self._started, timeout=20, interval=0.01, message="test registry server did not start"
        )
        return self

    def _started(self) -> bool:
        """True once uvicorn serves; raises RuntimeError if its thread ended first."""
        if self.server.started:
            return True
        if not self.thread.is_alive():
            raise RuntimeError("test registry server did not start")
        return False

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@dataclass
class RunningRegistry:
    """A registry under test: its URL, admin token, settings and service context."""

    url: str
    admin_token: str
    settings: object
    ctx: object
    backend: str
