"""No job lost, no duplicate result: worker crashes, broker restarts, the reconciler.

Real processes throughout: a private ``redis-server`` (nothing on disk, so a
restart loses every message), Postgres, moto S3, ``loreg worker`` subprocesses
killed with SIGKILL. The job row is the truth; these tests poll it.
"""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from registry.models import Job, utcnow
from registry.services.reconciler import REQUEUE_BACKOFF_CAP, reconcile, requeue_due
from tests.support.dispatch import RecordingDispatcher
from tests.support.fixtures_worker import JobStack, WorkerProcess, insert_job, write_adapter
from tests.support.tcpproxy import TcpProxy
from tests.support.tiny import save_adapter
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
SLOW_TIES = {"method": "ties", "density": 0.5, "rank": 8}  # seconds on the big adapters


def push_big_adapters(stack: JobStack, tmp: Path) -> None:
    """Two adapters (32 modules of 1024×1024, r=8) on which ties runs for seconds."""
    for name, seed in (("big-a", 5), ("big-b", 6)):
        stack.push(write_adapter(tmp / name, layers=16, d=1024, r=8, seed=seed), name)


def job_row(stack: JobStack, job_id: str) -> Job:
    """The job row straight from the database."""
    with Session(stack.ctx.engine) as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


# ------------------------------------------------------------------ reconcile passes


def test_reconcile_requeues_lost_and_stale_jobs_once(registry_server):
    ctx = registry_server.ctx
    s = ctx.settings
    now = utcnow()
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    old = s.job_requeue_after_s + 1
    stale = s.job_stale_after_s + 1
    ids = {
        "fresh_queued": insert_job(ctx, enqueued_at=ago(1), created_at=ago(1)),
        "lost_queued": insert_job(ctx, enqueued_at=ago(old), created_at=ago(old), queue="gpu"),
        "dead_worker": insert_job(
            ctx, status="running", worker="host:1", heartbeat_at=ago(stale), attempts=1
        ),
        "alive_worker": insert_job(ctx, status="running", worker="host:2", heartbeat_at=ago(1)),
        "cancel_dead": insert_job(
            ctx, status="running", cancel_requested=True, heartbeat_at=ago(stale)
        ),
        "cancel_alive": insert_job(
            ctx, status="running", cancel_requested=True, heartbeat_at=ago(1)
        ),
        "done": insert_job(ctx, status="succeeded", enqueued_at=ago(10 * old)),
    }
    sent = RecordingDispatcher()
    counts = reconcile(ctx, sent.enqueue, now=now)

    assert sorted(sent.sent) == sorted([(ids["lost_queued"], "gpu"), (ids["dead_worker"], "cpu")])
    assert counts == {"cancelled": 1, "recovered": 1, "requeued": 1, "enqueue_failed": 0}
    with Session(ctx.engine) as session:
        rows = {name: session.get(Job, job_id) for name, job_id in ids.items()}
        status = {name: job.status for name, job in rows.items()}
        assert status == {
            "fresh_queued": "queued",
            "lost_queued": "queued",
            "dead_worker": "queued",
            "alive_worker": "running",
            "cancel_dead": "cancelled",
            "cancel_alive": "running",  # its worker is alive and will stop it
            "done": "succeeded",
        }
        assert "host:1" in rows["dead_worker"].message
        assert rows["dead_worker"].heartbeat_at is None
    # the pass marked what it sent: at once again, nothing is due
    again = RecordingDispatcher()
    assert reconcile(ctx, again.enqueue, now=now + timedelta(seconds=0.5))["requeued"] == 0
    assert again.sent == []


def test_reconcile_counts_a_broker_refusal_and_retries_later(registry_server):
    ctx = registry_server.ctx
    old = ctx.settings.job_requeue_after_s + 1
    now = utcnow()
    job_id = insert_job(ctx, enqueued_at=now - timedelta(seconds=old))

    def refuse(job_id: str, queue: str) -> None:
        raise ConnectionError("broker down")

    assert reconcile(ctx, refuse, now=now)["enqueue_failed"] == 1
    sent = RecordingDispatcher()
    later = now + timedelta(seconds=2 * ctx.settings.job_requeue_after_s + 1)
    assert reconcile(ctx, sent.enqueue, now=later)["requeued"] == 1
    assert sent.sent == [(job_id, "cpu")]


def test_concurrent_reconcilers_send_each_job_once(registry_server):
    ctx = registry_server.ctx
    old = ctx.settings.job_requeue_after_s + 1
    now = utcnow()
    ids = {insert_job(ctx, enqueued_at=now - timedelta(seconds=old)) for _ in range(12)}
    sent = RecordingDispatcher()
    barrier = threading.Barrier(3)

    def one_pass() -> None:
        barrier.wait()
        reconcile(ctx, sent.enqueue, now=now)

    threads = [threading.Thread(target=one_pass) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(job_id for job_id, _ in sent.sent) == sorted(ids)


def test_requeue_interval_doubles_with_the_wait_and_is_capped():
    t0 = utcnow()
    after = 3.0
    sec = lambda n: timedelta(seconds=n)  # noqa: E731
    assert requeue_due(t0, None, t0, after)  # never sent
    # sent at creation: due after `after`
    assert not requeue_due(t0, t0, t0 + sec(after - 0.1), after)
    assert requeue_due(t0, t0, t0 + sec(after), after)
    # re-sent after waiting 8 s: next time after another 8 s
    assert not requeue_due(t0, t0 + sec(8), t0 + sec(8 + 7.9), after)
    assert requeue_due(t0, t0 + sec(8), t0 + sec(16), after)
    # after a long wait the interval is capped
    cap = REQUEUE_BACKOFF_CAP * after
    sent = t0 + sec(3600)
    assert not requeue_due(t0, sent, sent + sec(cap - 0.1), after)
    assert requeue_due(t0, sent, sent + sec(cap), after)


# ------------------------------------------------------------- real processes


def start_slow_job(stack: JobStack, tmp_path: Path, output: str) -> tuple[WorkerProcess, str]:
    """A worker, and a slow ties combine on the big adapters that it is running now."""
    push_big_adapters(stack, tmp_path)
    worker = stack.start_worker()
    body = {
        "type": "combine",
        "inputs": [{"ref": "big-a-v1", "weight": 0.6}, {"ref": "big-b-v1", "weight": 0.4}],
        "params": SLOW_TIES,
        "output": output,
    }
    job_id = stack.submit_ok(body)["id"]
    assert stack.wait(job_id, ("running", "succeeded", "failed"))["status"] == "running"
    return worker, job_id


def test_worker_killed_mid_job_reruns_and_registers_one_version(worker_stack, tmp_path):
    stack = worker_stack
    first, job_id = start_slow_job(stack, tmp_path, "big-ties")
    crashed_on = job_row(stack, job_id).worker
    first.kill()  # the whole process group: main process and pool child

    row = job_row(stack, job_id)
    assert row.status == "running" and row.attempts == 1  # nobody is running it now
    assert stack.versions_of_job(job_id) == []

    stack.start_worker()
    job = stack.wait(job_id, timeout=180)
    assert job["status"] == "succeeded", (job, stack.worker_logs())
    assert job["attempts"] >= 2
    assert job_row(stack, job_id).worker != crashed_on
    assert stack.versions_of_job(job_id) == [("big-ties", 1)]
    assert stack.versions_named("big-ties") == [1]
    lineage = stack.resolve(job["result"]["ref"])["lineage"]
    assert sorted(e["parent"]["ref"] for e in lineage) == ["default/big-a-v1", "default/big-b-v1"]

    # A worker that dies after publishing but before marking the job: the job is
    # recovered and run again; the job id maps it to the version already there.
    with Session(stack.ctx.engine) as session:
        session.execute(
            sa.update(Job)
            .where(Job.id == job_id)
            .values(
                status="running",
                result=None,
                finished_at=None,
                heartbeat_at=utcnow() - timedelta(seconds=60),
            )
        )
        session.commit()
    again = stack.wait(job_id, timeout=180)
    assert again["status"] == "succeeded", (again, stack.worker_logs())
    assert again["attempts"] == job["attempts"] + 1
    assert again["result"] == job["result"]
    assert stack.versions_named("big-ties") == [1]


def test_pool_child_killed_mid_job_is_rerun_by_the_same_worker(worker_stack, tmp_path):
    """SIGKILL only the prefork child running the job (task_reject_on_worker_lost path)."""
    stack = worker_stack
    worker, job_id = start_slow_job(stack, tmp_path, "child-ties")
    child_pid = int(job_row(stack, job_id).worker.rsplit(":", 1)[1])
    assert child_pid != worker.pid  # the job runs in a pool child, not the main process
    os.kill(child_pid, signal.SIGKILL)

    job = stack.wait(job_id, timeout=180)
    assert worker.process.poll() is None  # the main process lived on and re-ran it
    assert job["status"] == "succeeded", (job, stack.worker_logs())
    assert job["attempts"] == 2
    assert not job_row(stack, job_id).worker.endswith(f":{child_pid}")  # a new child ran it
    assert stack.versions_of_job(job_id) == [("child-ties", 1)]
    assert stack.versions_named("child-ties") == [1]


def test_redis_restart_loses_no_job(worker_stack, tmp_path):
    stack = worker_stack
    stack.push(save_adapter(tmp_path / "medical", seed=1, r=4), "medical")
    stack.push(save_adapter(tmp_path / "legal", seed=2, r=8), "legal")
    inputs = [{"ref": "medical-v1", "weight": 0.5}, {"ref": "legal-v1", "weight": 0.5}]
    methods = {"cat": {}, "linear": {}, "svd": {"rank": 4}}
    ids = {
        f"out-{m}": stack.submit_ok(
            {
                "type": "combine",
                "inputs": inputs,
                "params": {"method": m, **p},
                "output": f"out-{m}",
            }
        )["id"]
        for m, p in methods.items()
    }
    redis = stack.redis.client()
    card_jobs = stack.api.get("/v1/jobs", params={"type": "card"}).json()
    assert len(card_jobs) == 2  # each push also queued its version's card job (cpu)
    assert redis.llen("cpu") == len(ids) + len(card_jobs)  # the messages are in the broker...
    stack.redis.restart()
    assert stack.redis.client().llen("cpu") == 0  # ...and now they are gone

    stack.redis.stop()  # a job submitted while the broker is down is accepted too
    late = stack.submit_ok(
        {"type": "combine", "inputs": inputs, "params": {"method": "cat"}, "output": "out-late"}
    )
    assert late["status"] == "queued"
    ids["out-late"] = late["id"]
    stack.redis.start()

    stack.start_worker()
    for output, job_id in ids.items():
        job = stack.wait(job_id, timeout=120)
        assert job["status"] == "succeeded", (job, stack.worker_logs())
        assert job["attempts"] == 1
        assert job["result"]["ref"] == f"default/{output}-v1"
        assert stack.versions_of_job(job_id) == [(output, 1)]
        assert stack.versions_named(output) == [1]


def test_s3_outage_is_retried_with_backoff_not_failed(worker_stack, tmp_path, s3_endpoint):
    stack = worker_stack
    stack.push(save_adapter(tmp_path / "medical", seed=1, r=4), "medical")
    stack.push(save_adapter(tmp_path / "legal", seed=2, r=8), "legal")
    host, port = urlsplit(s3_endpoint).hostname, urlsplit(s3_endpoint).port
    with TcpProxy(host, port) as proxy:
        # the worker reaches S3 only through the proxy, which is cut: connections refused
        stack.env = {**stack.env, "LOREG_S3_ENDPOINT_URL": proxy.url}
        proxy.cut()
        stack.start_worker()
        body = {
            "type": "combine",
            "inputs": [{"ref": "medical-v1", "weight": 0.5}, {"ref": "legal-v1", "weight": 0.5}],
            "params": {"method": "cat"},
            "output": "through-outage",
        }
        job_id = stack.submit_ok(body)["id"]
        job = wait_until(
            lambda: (seen := stack.job(job_id))["error"] and seen,
            timeout=120,
            interval=0.1,
            message=lambda: (stack.job(job_id), stack.worker_logs()),
        )
        # released for a retry, not failed: the error says why it will run again
        assert job["status"] in ("queued", "running"), job
        assert job["error"].startswith("retrying after: "), job
        assert "connect" in job["error"].lower(), job
        assert job["attempts"] == 1 and stack.versions_of_job(job_id) == []

        proxy.restore()
        done = stack.wait(job_id, timeout=120)
    assert done["status"] == "succeeded", (done, stack.worker_logs())
    assert done["attempts"] == 2 and done["error"] is None
    assert stack.versions_of_job(job_id) == [("through-outage", 1)]


def test_lasting_s3_outage_fails_the_job_with_the_last_error(worker_stack, tmp_path, s3_endpoint):
    stack = worker_stack
    stack.push(save_adapter(tmp_path / "medical", seed=1, r=4), "medical")
    host, port = urlsplit(s3_endpoint).hostname, urlsplit(s3_endpoint).port
    with TcpProxy(host, port) as proxy:
        proxy.cut()  # and never restored
        stack.env = {
            **stack.env,
            "LOREG_S3_ENDPOINT_URL": proxy.url,
            "LOREG_JOB_MAX_ATTEMPTS": "2",
        }
        stack.start_worker()
        body = {"type": "compress", "inputs": [{"ref": "medical-v1"}], "params": {"rank": 2}}
        job_id = stack.submit_ok({**body, "output": "never"})["id"]
        job = stack.wait(job_id, timeout=120)
    assert job["status"] == "failed", (job, stack.worker_logs())
    assert job["attempts"] == 2
    assert job["error"].startswith("gave up after 2 attempts; last error: "), job
    assert "could not connect" in job["error"].lower(), job
    assert stack.versions_of_job(job_id) == []


def test_database_outage_is_retried_by_celery_then_the_job_runs_once(worker_stack, tmp_path):
    """The worker's only road to Postgres is cut when the job arrives, restored later."""
    stack = worker_stack
    stack.push(save_adapter(tmp_path / "medical", seed=1, r=4), "medical")
    stack.push(save_adapter(tmp_path / "legal", seed=2, r=8), "legal")
    db = urlsplit(stack.settings.database_url)
    with TcpProxy(db.hostname, db.port) as proxy:
        proxied = db._replace(netloc=f"{db.username}@127.0.0.1:{proxy.port}").geturl()
        stack.env = {**stack.env, "LOREG_DATABASE_URL": proxied}
        proxy.cut()
        stack.start_worker()
        body = {
            "type": "combine",
            "inputs": [{"ref": "medical-v1", "weight": 0.5}, {"ref": "legal-v1", "weight": 0.5}],
            "params": {"method": "cat"},
            "output": "through-db-outage",
        }
        job_id = stack.submit_ok(body)["id"]  # the API's own database link is intact
        wait_until(
            lambda: "transient error" in stack.worker_logs(),
            timeout=60,
            interval=0.1,
            message=stack.worker_logs,
        )
        assert "retry 1/" in stack.worker_logs()
        job = stack.job(job_id)
        assert job["status"] == "queued" and job["attempts"] == 0  # nothing was claimed
        proxy.restore()
        done = stack.wait(job_id, timeout=120)
    assert done["status"] == "succeeded", (done, stack.worker_logs())
    assert stack.versions_of_job(job_id) == [("through-db-outage", 1)]
