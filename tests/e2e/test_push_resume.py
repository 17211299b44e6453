"""A push killed with SIGKILL mid-upload leaves nothing visible and resumes on re-run.

Run against both server modes: embedded (blobs sent to the API, LocalStore) and
production (Postgres, blobs sent straight to S3 through presigned URLs, moto_server).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import LOREG, Served, run_cli
from tests.support.publish import random_safetensors
from tests.support.tiny import save_adapter
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

EXTRA_FILES = 16
EXTRA_SIZE = 3 * 2**20


@pytest.fixture(params=["embedded", "production"])
def server(request) -> Served:
    """The module's embedded server, or its production (Postgres + S3) server."""
    return request.getfixturevalue("served" if request.param == "embedded" else "served_production")


def settled_blobs(served: Served, quiet_s: float = 0.5, timeout_s: float = 15) -> set[str]:
    """The stored blobs once no new one has appeared for ``quiet_s`` seconds.

    Requests the killed client left in flight still finish on the server.
    """
    deadline = time.monotonic() + timeout_s
    seen = served.stored_blobs()
    while True:
        time.sleep(quiet_s)
        now = served.stored_blobs()
        if now == seen or time.monotonic() > deadline:
            return now
        seen = now


def test_killed_push_leaves_no_version_and_rerun_sends_only_missing(server, tmp_path):
    folder = save_adapter(tmp_path / "big", seed=11)
    (folder / "assets").mkdir()
    for i in range(EXTRA_FILES):
        part = random_safetensors(EXTRA_SIZE, seed=i)
        (folder / "assets" / f"part-{i:02d}.safetensors").write_bytes(part)
    before = server.stored_blobs()

    proc = subprocess.Popen(
        [LOREG, "push", str(folder), "--name", "resumable"],
        env=server.env(tmp_path / "cache", LOREG_UPLOAD_CONCURRENCY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def three_blobs_sent() -> bool:
        if len(server.stored_blobs() - before) >= 3:
            return True
        assert proc.poll() is None, "push finished before it could be interrupted"
        return False

    wait_until(three_blobs_sent, timeout=120, interval=0.002, message="3 blobs never arrived")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sent_before_kill = settled_blobs(server) - before
    assert 3 <= len(sent_before_kill) < EXTRA_FILES + 2

    r = httpx.get(f"{server.url}/v1/resolve/resumable")
    assert r.status_code == 404, r.text  # nothing half-visible

    result = run_cli(
        server, tmp_path / "cache", "--json", "push", str(folder), "--name", "resumable"
    )
    info = json.loads(result.stdout)
    assert info["created"] is True and info["version"] == 1
    total = EXTRA_FILES + len([p for p in folder.iterdir() if p.is_file()])
    assert len(info["uploaded"]) + len(info["reused"]) == total
    assert len(info["uploaded"]) == total - len(sent_before_kill)
    assert httpx.get(f"{server.url}/v1/resolve/resumable").json()["version"] == 1
    assert server.stored_blobs() - before >= sent_before_kill
