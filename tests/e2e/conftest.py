"""Real ``loreg serve`` processes for end-to-end tests.

* ``served`` (module): the embedded default (SQLite + a local blob folder);
* ``served_production`` (module): production mode, a throw-away Postgres database
  and a fresh bucket on the test moto_server, configured through the environment
  exactly as a deployment is (``LOREG_DATABASE_URL``, ``LOREG_S3_*``, AWS variables).

Both are :class:`Served`; the server's stdout and stderr go to a log file (never an
undrained pipe, which a chatty server would fill and then block on).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_until

HERE = Path(__file__).parent
LOREG = str(Path(sys.executable).parent / "loreg")
ADMIN_TOKEN_LINE = re.compile(r"^admin token \(shown once[^)]*\): (\S+)$", re.MULTILINE)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``e2e``, so the fast lane leaves it out."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running ``loreg serve``: URL, admin token, data dir, process and its log.

    ``server_env`` holds the LOREG_*/AWS variables the server was started with;
    ``bucket`` and ``s3_endpoint`` are set in production mode.
    """

    url: str
    token: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path
    port: int
    server_env: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None
    s3_endpoint: str | None = None
    starts: int = 1

    def env(self, cache_dir: Path, **extra: str) -> dict[str, str]:
        """Environment for a CLI/SDK subprocess talking to this server."""
        return {
            **os.environ,
            "LOREG_URL": self.url,
            "LOREG_TOKEN": self.token,
            "LOREG_CACHE_DIR": str(cache_dir),
            "LOREG_NO_PROGRESS": "1",
            "HF_HUB_OFFLINE": "1",
            **extra,
        }

    def output(self) -> str:
        """Everything the current server process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def printed_admin_token(self) -> str | None:
        """The admin token the current process printed on start-up, if it printed one."""
        match = ADMIN_TOKEN_LINE.search(self.output())
        return match.group(1) if match else None

    def s3_client(self) -> Any:
        """A boto3 client on the server's S3 endpoint (production mode only)."""
        from tests.support.fixtures_s3 import s3_client

        assert self.s3_endpoint, "an embedded server has no S3 endpoint"
        return s3_client(self.s3_endpoint)

    def stored_blobs(self) -> set[str]:
        """The sha256 of every blob in the content-addressed store (local folder or bucket)."""
        if self.bucket is None:
            root = self.data_dir / "objects" / "blobs"
            return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()
        pages = (
            self.s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix="blobs/")
        )
        return {
            item["Key"].rsplit("/", 1)[-1] for page in pages for item in page.get("Contents", [])
        }

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the server and wait (SIGKILL after ``timeout`` seconds)."""
        stop_process(self.process, timeout)

    def restart(self) -> None:
        """Stop the server and start it again on the same port, data dir and environment."""
        self.stop()
        self.starts += 1
        log_path = self.log_path.with_name(f"serve.{self.starts}.log")
        again = start_server(self.data_dir, env=self.server_env, port=self.port, log_path=log_path)
        self.process, self.log_path, self.token = again.process, again.log_path, again.token


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM ``process`` and wait for it; SIGKILL it if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_server(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 60,
    extra_args: Sequence[str] = (),
) -> Served:
    """Start ``loreg serve`` and wait until ``/v1/health`` answers 200.

    ``env`` is added to this process's environment minus its LOREG_* variables (so
    only what the test sets configures the server). Output goes to ``log_path``
    (default ``<data_dir>/../serve.log``).
    """
    import httpx

    port = port or free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir.parent / "serve.log"
    server_env = dict(env or {})
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    full_env.update(server_env)
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [LOREG, "serve", "--data-dir", str(data_dir), "--port", str(port), *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"loreg serve exited with {proc.returncode}: {log_path.read_text(errors='replace')}"
            )
        try:
            return httpx.get(url + "/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(
            healthy,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"loreg serve did not answer: {log_path.read_text(errors='replace')}",
        )
    except AssertionError:
        stop_process(proc, 5)
        raise
    token = (data_dir / "admin_token").read_text().strip()
    return Served(
        url=url,
        token=token,
        data_dir=data_dir,
        process=proc,
        log_path=log_path,
        port=port,
        server_env=server_env,
        bucket=server_env.get("LOREG_S3_BUCKET"),
        s3_endpoint=server_env.get("LOREG_S3_ENDPOINT_URL"),
    )


@contextmanager
def production_server(
    root: Path,
    s3_endpoint: str,
    *,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Served]:
    """``loreg serve`` on a new Postgres database and a new bucket (the server creates it).

    ``extra_env`` (e.g. ``LOREG_REDIS_URL``) and ``extra_args`` (e.g. ``--workers 2``)
    are added to the server's environment and command line. The database is dropped
    and the bucket emptied and removed afterwards.
    """
    from tests.support.fixtures_s3 import S3_TEST_ENV, _empty_and_remove
    from tests.support.servers import temp_pg_database

    bucket = f"loreg-e2e-{uuid.uuid4().hex[:12]}"
    with temp_pg_database() as database_url:
        env = {
            **S3_TEST_ENV,
            # the bare form hosting platforms hand out (no +driver)
            "LOREG_DATABASE_URL": database_url.replace("postgresql+psycopg2://", "postgresql://"),
            "LOREG_S3_ENDPOINT_URL": s3_endpoint,
            "LOREG_S3_BUCKET": bucket,
            "LOREG_S3_REGION": "us-east-1",
            "LOREG_S3_TRUST_CHECKSUMS": "0",  # moto keeps client-claimed checksums unverified
            **(extra_env or {}),
        }
        served = start_server(root / "data", env=env, extra_args=extra_args)
        try:
            yield served
        finally:
            served.stop()
            client = served.s3_client()
            with suppress(client.exceptions.NoSuchBucket):
                _empty_and_remove(client, bucket)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """A ``loreg serve`` subprocess with a fresh data dir (module scope)."""
    srv = start_server(tmp_path_factory.mktemp("serve") / "data")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def served_production(tmp_path_factory, s3_endpoint) -> Iterator[Served]:
    """A ``loreg serve`` subprocess on Postgres + the moto S3 server (module scope)."""
    with production_server(tmp_path_factory.mktemp("serve-prod"), s3_endpoint) as srv:
        yield srv


def run_cli(served: Served, cache_dir: Path, *args: str, check: bool = True, **extra_env):
    """Run the ``loreg`` CLI in a subprocess; returns the CompletedProcess."""
    result = subprocess.run(
        [LOREG, *args],
        env=served.env(cache_dir, **extra_env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"loreg {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result
