"""``loreg serve --workers 2`` in production mode: two processes serve one socket.

A real server on a throw-away Postgres database, a bucket on the test moto_server and
a private Redis (``LOREG_REDIS_URL``: production mode). Which process serves a
connection is read from ``/proc`` (:mod:`tests.support.procs`): the child that holds
the server end of that TCP connection. Embedded mode refuses more than one process.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loreg.errors import ConfigError
from tests.e2e.conftest import LOREG, Served, free_port, production_server
from tests.support import procs
from tests.support.fixtures_worker import RedisServer
from tests.support.tiny import save_adapter
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc"),
]

WORKERS = 2


@contextmanager
def workers_server(root: Path, s3_endpoint: str) -> Iterator[Served]:
    """``loreg serve --workers 2`` with a broker, once both children serve."""
    with (
        RedisServer() as redis,
        production_server(
            root,
            s3_endpoint,
            extra_env={"LOREG_REDIS_URL": redis.url},
            extra_args=["--workers", str(WORKERS)],
        ) as served,
    ):
        wait_until(
            lambda: len(serving_pids(served)) == WORKERS,
            timeout=60,
            message=lambda: f"not {WORKERS} serving processes: {served.output()}",
        )
        yield served


@pytest.fixture(scope="module")
def served_workers(tmp_path_factory, s3_endpoint) -> Iterator[Served]:
    """A module's ``loreg serve --workers 2`` (production mode)."""
    with workers_server(tmp_path_factory.mktemp("serve-workers"), s3_endpoint) as served:
        yield served


def serving_pids(served: Served) -> set[int]:
    """The serving children of the server (the parent serves nothing itself)."""
    return set(procs.spawned_children(served.process.pid))


class Answer:
    """One request on a fresh connection: status, JSON body, and the process that served it."""

    def __init__(self, served: Served, method: str, path: str, body: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        headers = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
        try:
            conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
            response = conn.getresponse()
            self.status = response.status
            self.data = json.loads(response.read() or b"null")
            # the connection is kept alive: its server end is still open in the child
            assert conn.sock is not None
            owner = procs.socket_owner(conn.sock, serving_pids(served))
            assert owner is not None, "no serving process holds the connection"
            self.pid, self.fd = owner
            self.nodelay = procs.peer_sockopt(
                self.pid, self.fd, socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
        finally:
            conn.close()


def answer_from(
    served: Served, pid: int, method: str, path: str, body: dict | None = None
) -> Answer:
    """Retry ``method path`` on fresh connections until process ``pid`` serves one.

    Only for requests that may run more than once (reads, and setting an alias to
    the same version).
    """
    for _ in range(200):
        answer = Answer(served, method, path, body)
        if answer.pid == pid:
            return answer
    raise AssertionError(f"process {pid} served none of 200 fresh connections")


def test_two_processes_answer_on_fresh_connections(served_workers):
    children = serving_pids(served_workers)
    assert len(children) == WORKERS and served_workers.process.pid not in children
    seen: set[int] = set()
    for _ in range(200):
        answer = Answer(served_workers, "GET", "/v1/health")
        assert answer.status == 200 and answer.data["status"] == "ok"
        assert answer.data["checks"]["broker"]["status"] == "ok"
        seen.add(answer.pid)
        if seen == children:
            break
    assert seen == children
    out = served_workers.output()
    assert out.count("serving on http://127.0.0.1:") == 1, out  # announced once, by the parent


def test_accepted_connections_have_tcp_nodelay_in_every_process(served_workers):
    for pid in sorted(serving_pids(served_workers)):
        answer = answer_from(served_workers, pid, "GET", "/v1/whoami")
        assert answer.status == 200 and answer.data["authenticated"] is True
        if answer.nodelay is None:
            pytest.skip("pidfd_getfd is not allowed here: cannot read the server's socket")
        assert answer.nodelay == 1, f"process {pid} accepted a connection without TCP_NODELAY"


def test_an_alias_moved_through_one_process_is_seen_by_the_next_request(served_workers, tmp_path):
    import loreg

    with loreg.Registry(
        served_workers.url, served_workers.token, cache_dir=tmp_path / "c", progress=False
    ) as registry:
        for seed in (1, 2, 3):
            registry.push(save_adapter(tmp_path / f"a{seed}", seed=seed), "moving")
    first, second = sorted(serving_pids(served_workers))
    alias = "/v1/adapters/default/moving/aliases/prod"
    # each move goes through one process; the very next request, on the other, sees it
    for version, writer, reader in ((1, first, second), (2, second, first), (3, first, second)):
        moved = answer_from(served_workers, writer, "PUT", alias, {"version": version})
        assert moved.status == 200, moved.data
        for pid in (reader, writer):
            seen = answer_from(served_workers, pid, "GET", "/v1/resolve/default/moving@prod")
            assert seen.status == 200 and seen.data["version"] == version, (pid, seen.data)


def test_a_dead_child_is_replaced_and_sigterm_stops_every_process(tmp_path, s3_endpoint):
    with workers_server(tmp_path, s3_endpoint) as served:
        parent = served.process.pid
        victim = min(serving_pids(served))
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(serving_pids(served)) == WORKERS and victim not in serving_pids(served),
            timeout=60,
            message=lambda: f"no replacement for process {victim}: {served.output()}",
        )
        children = procs.child_pids(parent)  # the serving ones and the resource tracker
        replacement = (serving_pids(served) - {victim}).pop()
        answer = answer_from(served, replacement, "GET", "/v1/health")
        assert answer.status == 200
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0, served.output()
        wait_until(
            lambda: not any(procs.alive(pid) for pid in children),
            timeout=10,
            message=lambda: f"processes left after SIGTERM: {children}",
        )
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", served.port), timeout=2).close()


def test_children_of_a_killed_parent_stop_too(tmp_path, s3_endpoint):
    with workers_server(tmp_path, s3_endpoint) as served:
        children = procs.child_pids(served.process.pid)
        served.process.kill()  # SIGKILL: the parent cannot stop its children itself
        served.process.wait(timeout=10)
        wait_until(
            lambda: not any(procs.alive(pid) for pid in children),
            timeout=20,
            message=lambda: f"orphans still running: {children}: {served.output()}",
        )


def refused(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``loreg serve`` with an embedded data dir and no broker, expected to refuse."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    result = subprocess.run(
        [LOREG, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == ConfigError.exit_code, (result.stdout, result.stderr)
    assert "serving on" not in result.stdout
    return result


def test_several_workers_without_a_broker_are_refused(tmp_path):
    flag = refused(tmp_path, "--workers", "2").stderr
    assert "--workers 2 needs production mode" in flag
    assert "LOREG_REDIS_URL" in flag and "--workers 1" in flag
    from_env = refused(tmp_path, LOREG_WORKERS="3").stderr
    assert "LOREG_WORKERS=3 needs production mode" in from_env
    assert "must be at least 1" in refused(tmp_path, "--workers", "0").stderr
    assert "LOREG_WORKERS must be at least 1" in refused(tmp_path, LOREG_WORKERS="0").stderr
    assert not (tmp_path / "data" / "loreg.db").exists()  # refused before any migration
