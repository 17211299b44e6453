"""A real ``loreg serve`` process on the embedded default, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

LOREG = str(Path(sys.executable).parent / "loreg")


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running ``loreg serve``: URL, admin token, data dir, process."""

    url: str
    token: str
    data_dir: Path
    process: subprocess.Popen

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


def start_server(data_dir: Path) -> Served:
    """Start ``loreg serve`` and wait until it answers."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [LOREG, "serve", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"loreg serve exited: {proc.stdout.read()}")
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("loreg serve did not answer within 60 s")
        time.sleep(0.1)
    token = (data_dir / "admin_token").read_text().strip()
    return Served(url=url, token=token, data_dir=data_dir, process=proc)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A ``loreg serve`` subprocess with a fresh data dir (module scope)."""
    srv = start_server(tmp_path_factory.mktemp("serve") / "data")
    yield srv
    srv.process.terminate()
    try:
        srv.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        srv.process.kill()


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
