"""Embedded mode loses no job across a restart of ``loreg serve``.

A previous server is simulated by job rows it left behind: one ``queued`` whose
message died with the old process, one ``running`` whose worker was killed (its
heartbeat stopped). :func:`registry.serve.start_job_recovery`, which
``loreg serve`` starts with the API, must hand both to the local executor (a
real child process running ``run_job``), each ending with exactly one version.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

import loreg
from registry.models import Job, Version, utcnow
from registry.serve import start_job_recovery
from tests.support.tiny import save_adapter
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class _NoDispatch:
    """The old server's broken delivery: jobs are written but never sent."""

    def enqueue(self, job_id: str, queue: str) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def registry_settings_overrides() -> dict:
    """Short recovery delays so the test takes seconds."""
    return {"job_requeue_after_s": 0.5, "job_stale_after_s": 1.0, "job_heartbeat_s": 0.2}


@pytest.mark.parametrize("registry_server", ["sqlite_local"], indirect=True)
def test_jobs_left_by_a_stopped_server_are_finished_after_restart(registry_server, tmp_path):
    ctx = registry_server.ctx
    ctx._dispatcher = _NoDispatch()
    with loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "cache",
        progress=False,
    ) as reg:
        reg.push(save_adapter(tmp_path / "a", seed=1, r=4), "a", base_model="tiny-llama")
        reg.push(save_adapter(tmp_path / "b", seed=2, r=4), "b", base_model="tiny-llama")
        ids = []
        for output in ("left-queued", "left-running"):
            body = {
                "type": "combine",
                "inputs": [{"ref": "a-v1", "weight": 0.5}, {"ref": "b-v1", "weight": 0.5}],
                "params": {"method": "cat"},
                "output": output,
            }
            ids.append(reg.api.post("/v1/jobs", body)["id"])
    long_ago = utcnow() - timedelta(hours=1)
    with Session(ctx.engine) as session:
        for job_id in ids:
            job = session.get(Job, job_id)
            job.enqueued_at = long_ago
            session.add(job)
        running = session.get(Job, ids[1])
        running.status, running.attempts, running.worker = "running", 1, "local:999999"
        running.started_at = running.heartbeat_at = long_ago
        session.add(running)
        session.commit()

    ctx._dispatcher = None  # the restarted server: a fresh local executor
    recovery = start_job_recovery(ctx)
    assert recovery is not None

    def job_states() -> list[tuple[str, int, str | None]]:
        with Session(ctx.engine) as session:
            jobs = [session.get(Job, job_id) for job_id in ids]
            return [(j.status, j.attempts, j.error) for j in jobs]

    def recovered() -> list[tuple[str, int, str | None]] | None:
        states = job_states()
        return states if all(s[0] in ("succeeded", "failed", "cancelled") for s in states) else None

    try:
        states = wait_until(
            recovered,
            timeout=120,
            interval=0.2,
            message=lambda: f"jobs not recovered: {job_states()}",
        )
    finally:
        recovery.stop()
        ctx.dispatcher.close()
    assert [s[0] for s in states] == ["succeeded", "succeeded"], states
    assert states[0][1] == 1 and states[1][1] == 2  # the killed run counted once
    with Session(ctx.engine) as session:
        for job_id in ids:
            versions = session.exec(select(Version).where(Version.job_id == job_id)).all()
            assert len(versions) == 1, (job_id, versions)
