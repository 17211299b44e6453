"""``workers.runner`` on real databases: column limits and stale claims.

The job handler is replaced by a test function (``handler_for`` is patched), so
these tests exercise the runner's bookkeeping only: what it writes to the job
row when a job fails, is released, gives up, or loses its claim to another
worker. Postgres enforces ``VARCHAR(n)``; SQLite does not, so the overflow tests
run on Postgres only.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from registry.models import Job, Version, utcnow
from tests.support.fixtures_worker import insert_job, write_adapter
from tests.support.servers import temp_pg_database
from tests.support.waiting import wait_until
from workers import runner
from workers.runner import (
    JobCancelled,
    JobContext,
    JobOutput,
    TransientJobError,
    claim,
    publish_output,
    run_job,
)

pytestmark = pytest.mark.integration
ERROR_MAX = Job.__table__.c.error.type.length
MESSAGE_MAX = Job.__table__.c.message.type.length


def make_ctx(backend: str, tmp: Path, stack: ExitStack, **overrides):
    """A migrated database (fresh Postgres database or SQLite file) and a local store."""
    from registry import migrate
    from registry.services.context import Context
    from registry.settings import Settings

    if backend == "postgres":
        url = stack.enter_context(temp_pg_database())
    else:
        url = f"sqlite:///{tmp / 'loreg.db'}"
    settings = Settings(
        data_dir=tmp / "data", database_url=url, secret_key=secrets.token_hex(16), **overrides
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(url)
    ctx = Context.from_settings(settings)
    stack.callback(ctx.close)
    return ctx


@pytest.fixture(params=["postgres", "sqlite"])
def ctx(request, tmp_path) -> Iterator:
    """A service context on each backend, with fast heartbeats."""
    with ExitStack() as stack:
        yield make_ctx(request.param, tmp_path, stack, job_heartbeat_s=0.05)


@pytest.fixture
def pg_ctx(tmp_path) -> Iterator:
    """A service context on a fresh Postgres database (VARCHAR limits enforced)."""
    with ExitStack() as stack:
        yield make_ctx("postgres", tmp_path, stack, job_heartbeat_s=0.05)


def row(ctx, job_id: str) -> Job:
    """The job row straight from the database."""
    with Session(ctx.engine) as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def use_handler(monkeypatch, handler) -> None:
    """Make every job type run ``handler``."""
    monkeypatch.setattr(runner, "handler_for", lambda job_type: handler)


def take_over(ctx, job_id: str, worker: str = "other:1") -> None:
    """What another worker's claim does to a job it took over after a stale heartbeat."""
    with Session(ctx.engine) as session:
        session.execute(
            sa.update(Job)
            .where(Job.id == job_id)
            .values(
                status="running",
                worker=worker,
                attempts=Job.attempts + 1,
                heartbeat_at=utcnow(),
                message="the new owner's message",
                error=None,
            )
        )
        session.commit()


# --------------------------------------------------------------------- column limits


def test_a_very_long_error_fails_the_job_with_a_truncated_error(pg_ctx, monkeypatch):
    long = "x" * 10_000

    def handler(jc: JobContext) -> JobOutput:
        jc.report(0.5, "m" * 5_000)  # an over-long progress message too
        raise ValueError(long)

    use_handler(monkeypatch, handler)
    job_id = insert_job(pg_ctx)
    assert run_job(pg_ctx, job_id, worker="w:1") == "failed"
    job = row(pg_ctx, job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert len(job.error) <= ERROR_MAX
    assert job.error.startswith("x" * 1000) and job.error.endswith("(truncated)")
    assert len(job.message or "") <= MESSAGE_MAX
    assert "x" * 1000 in job.log_tail


def test_a_very_long_unexpected_error_fails_the_job(pg_ctx, monkeypatch):
    def handler(jc: JobContext) -> JobOutput:
        raise RuntimeError("y" * 10_000)

    use_handler(monkeypatch, handler)
    job_id = insert_job(pg_ctx)
    assert run_job(pg_ctx, job_id, worker="w:1") == "failed"
    job = row(pg_ctx, job_id)
    assert job.status == "failed"
    assert job.error.startswith("RuntimeError: yyy") and len(job.error) <= ERROR_MAX


def test_a_very_long_transient_error_releases_the_job(pg_ctx, monkeypatch):
    def handler(jc: JobContext) -> JobOutput:
        raise ConnectionError("z" * 10_000)

    use_handler(monkeypatch, handler)
    job_id = insert_job(pg_ctx)
    with pytest.raises(TransientJobError):
        run_job(pg_ctx, job_id, worker="w:1")
    job = row(pg_ctx, job_id)
    assert job.status == "queued" and job.heartbeat_at is None
    assert job.error.startswith("retrying after: ConnectionError: zzz")
    assert len(job.error) <= ERROR_MAX and job.error.endswith("(truncated)")

    # the attempts run out: the give-up text quotes the (already full-length) last error
    with Session(pg_ctx.engine) as session:
        session.execute(
            sa.update(Job).where(Job.id == job_id).values(attempts=pg_ctx.settings.job_max_attempts)
        )
        session.commit()
    assert claim(pg_ctx, job_id, "w:2") is None
    job = row(pg_ctx, job_id)
    assert job.status == "failed"
    assert job.error.startswith(f"gave up after {pg_ctx.settings.job_max_attempts} attempts")
    assert len(job.error) <= ERROR_MAX


# ---------------------------------------------------------------------- stale claims


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
def test_a_runner_whose_claim_was_replaced_does_not_overwrite_the_new_owner(
    ctx, monkeypatch, outcome
):
    """The old runner ends (success, failure or cancellation) after another worker took over."""

    def handler(jc: JobContext) -> JobOutput:
        take_over(ctx, jc.job.id)
        if outcome == "failed":
            raise ValueError("the old attempt failed")
        if outcome == "cancelled":
            raise JobCancelled("cancelled")
        return JobOutput(folder=Path("unused"))

    use_handler(monkeypatch, handler)
    monkeypatch.setattr(
        runner, "publish_output", lambda *a: {"kind": "adapter", "ref": "default/out-v1"}
    )
    job_id = insert_job(ctx)
    assert run_job(ctx, job_id, worker="old:1") == "running"  # what the new owner holds
    job = row(ctx, job_id)
    assert (job.status, job.worker, job.attempts) == ("running", "other:1", 2)
    assert job.message == "the new owner's message"
    assert job.error is None and job.result is None and job.finished_at is None


def test_a_runner_whose_claim_was_replaced_is_not_released(ctx, monkeypatch):
    def handler(jc: JobContext) -> JobOutput:
        take_over(ctx, jc.job.id)
        raise ConnectionError("database hiccup")

    use_handler(monkeypatch, handler)
    job_id = insert_job(ctx)
    assert run_job(ctx, job_id, worker="old:1") == "running"
    job = row(ctx, job_id)
    assert (job.status, job.worker, job.error) == ("running", "other:1", None)
    assert job.heartbeat_at is not None


def test_the_same_worker_name_reclaiming_is_another_attempt(ctx, monkeypatch):
    """A restarted process may reuse host:pid: the attempt number tells the claims apart."""

    def handler(jc: JobContext) -> JobOutput:
        take_over(ctx, jc.job.id, worker="w:1")  # same name, next attempt
        raise ValueError("the old attempt failed")

    use_handler(monkeypatch, handler)
    job_id = insert_job(ctx)
    assert run_job(ctx, job_id, worker="w:1") == "running"
    job = row(ctx, job_id)
    assert (job.status, job.attempts, job.error) == ("running", 2, None)


def test_a_lost_heartbeat_stops_the_runner_without_touching_the_row(ctx, monkeypatch):
    seen: dict[str, object] = {}

    def handler(jc: JobContext) -> JobOutput:
        jc.report(0.3, "working")
        take_over(ctx, jc.job.id)

        def heartbeat() -> None:
            try:
                jc.report(0.4)
            except JobCancelled as exc:
                seen["exc"] = exc
                raise

        wait_until(  # ends only by raising: JobLost, or AssertionError after 30 s
            heartbeat,
            timeout=30,
            interval=0.01,
            message="the heartbeat never noticed the lost claim",
        )

    use_handler(monkeypatch, handler)
    job_id = insert_job(ctx)
    assert run_job(ctx, job_id, worker="old:1") == "running"
    assert isinstance(seen["exc"], runner.JobLost)
    job = row(ctx, job_id)
    assert (job.status, job.worker, job.attempts) == ("running", "other:1", 2)
    assert job.message == "the new owner's message" and job.finished_at is None


def test_cancellation_still_cancels(ctx, monkeypatch):
    def handler(jc: JobContext) -> JobOutput:
        with Session(ctx.engine) as session:
            session.execute(sa.update(Job).where(Job.id == jc.job.id).values(cancel_requested=True))
            session.commit()
        wait_until(  # ends only by raising: JobCancelled, or AssertionError after 30 s
            lambda: jc.report(0.4),
            timeout=30,
            interval=0.01,
            message="the cancellation was never noticed",
        )

    use_handler(monkeypatch, handler)
    job_id = insert_job(ctx)
    assert run_job(ctx, job_id, worker="w:1") == "cancelled"
    job = row(ctx, job_id)
    assert (job.status, job.message) == ("cancelled", "cancelled")


def test_a_duplicate_delivery_on_the_last_attempt_leaves_the_running_job_alone(ctx):
    attempts = ctx.settings.job_max_attempts
    job_id = insert_job(
        ctx, status="running", worker="w:1", attempts=attempts, heartbeat_at=utcnow()
    )
    assert run_job(ctx, job_id, worker="w:2") == "running"
    job = row(ctx, job_id)
    assert (job.status, job.worker, job.error) == ("running", "w:1", None)

    # once its heartbeat is stale, the next delivery gives up on it
    stale = utcnow() - timedelta(seconds=ctx.settings.job_stale_after_s + 1)
    with Session(ctx.engine) as session:
        session.execute(sa.update(Job).where(Job.id == job_id).values(heartbeat_at=stale))
        session.commit()
    assert run_job(ctx, job_id, worker="w:2") == "failed"
    assert row(ctx, job_id).error.startswith(f"gave up after {attempts} attempts")


# ----------------------------------------------------------------------------- publish


def test_publish_returns_the_version_another_attempt_registered(ctx, tmp_path, monkeypatch):
    job_id = insert_job(ctx)
    job = row(ctx, job_id)
    output = JobOutput(folder=write_adapter(tmp_path / "adapter", layers=1, d=16, r=2))
    first = publish_output(ctx, job, output)
    assert first["ref"] == "default/out-v1"

    # another attempt's commit wins the race on the unique job id
    from registry.services.publish import server_side

    def lose_the_race(*args, **kwargs):
        raise sa.exc.IntegrityError("INSERT INTO versions", {}, Exception("unique job_id"))

    monkeypatch.setattr(server_side, "commit_upload", lose_the_race)
    assert publish_output(ctx, job, output) == first
    with Session(ctx.engine) as session:
        assert len(session.exec(select(Version).where(Version.job_id == job_id)).all()) == 1
