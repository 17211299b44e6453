"""The embedded executor's job process ends with the API process that started it.

A child Python process stands in for ``loreg serve``: it makes a
:class:`registry.services.dispatch.LocalDispatcher`, runs one job (which reports the
pid of the job process) and is then killed — by SIGKILL, and by the signal
uvicorn re-raises after a graceful SIGTERM. The job process must not outlive it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

API_PROCESS = textwrap.dedent(
    """
    import sys, time
    from registry.services.dispatch import LocalDispatcher
    from registry.settings import Settings
    from tests.support.procs import write_own_pid

    settings = Settings.from_env(data_dir=sys.argv[1])
    dispatcher = LocalDispatcher(settings, write_own_pid)
    dispatcher.enqueue(sys.argv[2], "cpu")
    print("enqueued", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_the_job_process_exits_when_the_api_process_dies(tmp_path, sig):
    pid_file = tmp_path / "job.pid"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    api = subprocess.Popen(
        [sys.executable, "-c", API_PROCESS, str(tmp_path / "data"), str(pid_file)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        job_pid = wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=60)
        job_pid = int(job_pid)
        assert procs.alive(job_pid) and job_pid in procs.child_pids(api.pid)
        api.send_signal(sig)
        api.wait(timeout=30)
        wait_until(
            lambda: not procs.alive(job_pid),
            timeout=15,
            message=f"job process {job_pid} outlived the API process ({procs.cmdline(job_pid)})",
        )
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
