"""A push killed with SIGKILL mid-upload leaves nothing visible and resumes on re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import LOREG, run_cli
from tests.support.tiny import save_adapter

pytestmark = pytest.mark.e2e

EXTRA_FILES = 16
EXTRA_SIZE = 3 * 2**20


def _stored_blobs(data_dir) -> set[str]:
    root = data_dir / "objects" / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_killed_push_leaves_no_version_and_rerun_sends_only_missing(served, tmp_path):
    folder = save_adapter(tmp_path / "big", seed=11)
    (folder / "assets").mkdir()
    for i in range(EXTRA_FILES):
        (folder / "assets" / f"part-{i:02d}.dat").write_bytes(os.urandom(EXTRA_SIZE))
    before = _stored_blobs(served.data_dir)

    proc = subprocess.Popen(
        [LOREG, "push", str(folder), "--name", "resumable"],
        env=served.env(tmp_path / "cache", LOREG_UPLOAD_CONCURRENCY="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(_stored_blobs(served.data_dir) - before) < 3:
        assert proc.poll() is None, "push finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let the server finish (or drop) the blob that was in flight
    sent_before_kill = _stored_blobs(served.data_dir) - before
    assert 3 <= len(sent_before_kill) < EXTRA_FILES + 2

    r = httpx.get(f"{served.url}/v1/resolve/resumable")
    assert r.status_code == 404, r.text  # nothing half-visible

    result = run_cli(
        served, tmp_path / "cache", "--json", "push", str(folder), "--name", "resumable"
    )
    info = json.loads(result.stdout)
    assert info["created"] is True and info["version"] == 1
    total = EXTRA_FILES + len([p for p in folder.iterdir() if p.is_file()])
    assert len(info["uploaded"]) + len(info["reused"]) == total
    assert len(info["uploaded"]) == total - len(sent_before_kill)
    assert httpx.get(f"{served.url}/v1/resolve/resumable").json()["version"] == 1
