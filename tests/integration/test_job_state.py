"""The job state machine (``registry.services.job_state``) on real Postgres and SQLite.

Every transition is tried from the state it moves a job from (it wins, and the
row shows it) and from states it must refuse (it loses, and the row is left
exactly as it was): a claim of a claimed job, a heartbeat or finish by a worker
that does not hold the claim, a finish after a cancellation, a requeue of a live
job, a second reconciler re-sending a message the first already sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from loreg.vocabulary import TERMINAL_STATUSES, JobStatus
from registry.models import Job, utcnow
from registry.services import job_state
from registry.services.job_state import ERROR_MAX, Claim
from tests.support.servers import temp_pg_database

pytestmark = pytest.mark.integration
STALE_AFTER = timedelta(seconds=60)
# the columns a refused transition must leave untouched
WATCHED = (
    "status",
    "worker",
    "attempts",
    "cancel_requested",
    "progress",
    "message",
    "error",
    "log_tail",
    "result",
    "heartbeat_at",
    "enqueued_at",
    "finished_at",
)


@pytest.fixture(params=["postgres", "sqlite"])
def engine(request, tmp_path: Path) -> Iterator[Any]:
    """An engine on a freshly migrated database of each backend."""
    from registry import migrate
    from registry.db import make_engine

    if request.param == "postgres":
        with temp_pg_database() as url:
            migrate.upgrade(url)
            engine = make_engine(url)
            yield engine
            engine.dispose()
    else:
        url = f"sqlite:///{tmp_path / 'loreg.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        yield engine
        engine.dispose()


def insert(engine, **fields: Any) -> str:
    """A combine job row in the state ``fields`` give (queued by default)."""
    job = Job(type="combine", namespace="default", output="out", inputs=[], params={}, **fields)
    with Session(engine) as session:
        session.add(job)
        session.commit()
        return job.id


def insert_running(engine, worker: str, heartbeat_at: datetime, **fields: Any) -> str:
    """A job row running under ``(worker, attempt 1)``, its last heartbeat at ``heartbeat_at``."""
    fields.update(status="running", worker=worker, attempts=1, heartbeat_at=heartbeat_at)
    return insert(engine, **fields)


def row(engine, job_id: str) -> dict[str, Any]:
    """The watched columns of the job row, straight from the database."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return {name: getattr(job, name) for name in WATCHED}


def apply(engine, move, *args: Any, **kwargs: Any) -> Any:
    """Run one transition in its own session and commit; what it returned."""
    with Session(engine) as session:
        outcome = move(session, *args, **kwargs)
        session.commit()
        return outcome


def refused(engine, job_id: str, move, *args: Any, **kwargs: Any) -> None:
    """Assert the transition loses and leaves the row exactly as it was."""
    before = row(engine, job_id)
    assert apply(engine, move, *args, **kwargs) is False
    assert row(engine, job_id) == before


def times() -> tuple[datetime, datetime, datetime]:
    """``(now, stale_before, a stale heartbeat)``."""
    now = utcnow()
    return now, now - STALE_AFTER, now - 2 * STALE_AFTER


def claimed(engine, worker: str = "w:1", **fields: Any) -> tuple[str, Claim]:
    """A job claimed by ``worker`` (attempt 1), and its claim."""
    now, stale_before, _ = times()
    job_id = insert(engine, **fields)
    assert apply(engine, job_state.claim, job_id, worker, stale_before=stale_before, now=now)
    return job_id, Claim(job_id, worker, 1)


# --------------------------------------------------------------------- submit, claim


def test_submit_inserts_a_queued_job_marked_as_sent(engine):
    job = Job(type="combine", namespace="default", output="out", inputs=[], params={})
    with Session(engine, expire_on_commit=False) as session:
        job_state.submit(session, job)
        session.commit()
    got = row(engine, job.id)
    assert got["status"] == JobStatus.QUEUED and got["attempts"] == 0
    assert got["enqueued_at"] is not None and got["worker"] is None


def test_a_queued_job_is_claimed_once(engine):
    now, stale_before, _ = times()
    job_id = insert(engine, error="retrying after: a hiccup")
    assert apply(engine, job_state.claim, job_id, "w:1", stale_before=stale_before, now=now)
    got = row(engine, job_id)
    assert (got["status"], got["worker"], got["attempts"]) == ("running", "w:1", 1)
    assert got["error"] is None and got["heartbeat_at"] is not None

    # a claimed job (fresh heartbeat) cannot be claimed again, by anyone
    refused(engine, job_id, job_state.claim, job_id, "w:2", stale_before=stale_before, now=now)
    refused(engine, job_id, job_state.claim, job_id, "w:1", stale_before=stale_before, now=now)


def test_of_racing_claims_exactly_one_wins(engine):
    now, stale_before, _ = times()
    job_id = insert(engine)
    workers = [f"w:{i}" for i in range(6)]
    start = threading.Barrier(len(workers))
    won: dict[str, bool] = {}

    def race(worker: str) -> None:
        start.wait()
        won[worker] = apply(
            engine, job_state.claim, job_id, worker, stale_before=stale_before, now=now
        )

    threads = [threading.Thread(target=race, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [w for w, ok in won.items() if ok]
    assert len(won) == len(workers) and len(winners) == 1
    got = row(engine, job_id)
    assert (got["status"], got["worker"], got["attempts"]) == ("running", winners[0], 1)


def test_a_stale_claim_is_taken_over_and_the_old_owner_writes_nothing(engine):
    now, stale_before, stale = times()
    job_id, old = claimed(engine)
    apply_heartbeat_at(engine, job_id, stale)
    assert apply(engine, job_state.claim, job_id, "w:2", stale_before=stale_before, now=now)
    got = row(engine, job_id)
    assert (got["status"], got["worker"], got["attempts"]) == ("running", "w:2", 2)

    refused(engine, job_id, job_state.heartbeat, old, progress=0.5, message="old", log_tail="old")
    refused(engine, job_id, job_state.finish, old, JobStatus.SUCCEEDED, message="m", log_tail="")
    refused(engine, job_id, job_state.finish, old, JobStatus.FAILED, message="m", log_tail="")
    refused(engine, job_id, job_state.release, old, "ConnectionError: old")


def test_a_job_with_a_cancellation_requested_is_not_claimed(engine):
    now, stale_before, stale = times()
    queued = insert(engine, cancel_requested=True)
    refused(engine, queued, job_state.claim, queued, "w:1", stale_before=stale_before, now=now)
    running = insert_running(engine, "w:0", stale, cancel_requested=True)
    refused(engine, running, job_state.claim, running, "w:1", stale_before=stale_before, now=now)


@pytest.mark.parametrize("status", TERMINAL_STATUSES)
def test_a_finished_job_is_never_claimed(engine, status):
    now, stale_before, _ = times()
    job_id = insert(engine, status=status, finished_at=now)
    refused(engine, job_id, job_state.claim, job_id, "w:1", stale_before=stale_before, now=now)


# ------------------------------------------------------------------------ give up


def test_give_up_fails_a_claimable_job_whose_attempts_are_used_up(engine):
    now, stale_before, stale = times()
    job_id = insert(
        engine,
        status="running",
        worker="w:1",
        attempts=3,
        heartbeat_at=stale,
        error="retrying after: S3 down",
    )
    # the attempts were read as 2: someone claimed it since; nothing is written
    refused(engine, job_id, job_state.give_up, job_id, 2, "x", stale_before=stale_before, now=now)
    last_error = "retrying after: S3 down"
    assert apply(
        engine, job_state.give_up, job_id, 3, last_error, stale_before=stale_before, now=now
    )
    got = row(engine, job_id)
    assert got["status"] == "failed" and got["finished_at"] is not None
    assert got["error"] == "gave up after 3 attempts; last error: S3 down"


def test_give_up_leaves_a_live_last_attempt_alone(engine):
    now, stale_before, _ = times()
    job_id = insert(engine, status="running", worker="w:1", attempts=3, heartbeat_at=now)
    refused(engine, job_id, job_state.give_up, job_id, 3, None, stale_before=stale_before, now=now)
    done = insert(engine, status="succeeded", attempts=3, finished_at=now)
    refused(engine, done, job_state.give_up, done, 3, None, stale_before=stale_before, now=now)


def test_give_up_without_a_last_error_says_workers_kept_dying(engine):
    now, stale_before, _ = times()
    job_id = insert(engine, attempts=3)
    assert apply(engine, job_state.give_up, job_id, 3, None, stale_before=stale_before, now=now)
    assert row(engine, job_id)["error"] == "gave up after 3 attempts (workers kept dying)"


# ---------------------------------------------------------------------- heartbeat


def test_only_the_claim_beats(engine):
    job_id, held = claimed(engine)
    other_worker = Claim(job_id, "w:2", held.attempt)
    other_attempt = Claim(job_id, held.worker, held.attempt + 1)
    beat = job_state.heartbeat
    for stranger in (other_worker, other_attempt):
        refused(engine, job_id, beat, stranger, progress=0.9, message="x", log_tail="")

    beat_at = utcnow() + timedelta(seconds=1)
    assert apply(
        engine,
        job_state.heartbeat,
        held,
        progress=0.5,
        message="halfway",
        log_tail="a\nb",
        now=beat_at,
    )
    got = row(engine, job_id)
    assert (got["status"], got["progress"], got["message"]) == ("running", 0.5, "halfway")
    assert got["log_tail"] == "a\nb"


def test_a_heartbeat_after_the_end_is_refused(engine):
    job_id, held = claimed(engine)
    assert apply(engine, job_state.finish, held, JobStatus.FAILED, message="failed", log_tail="")
    refused(engine, job_id, job_state.heartbeat, held, progress=0.7, message="late", log_tail="")


# ------------------------------------------------------------------ finish, release


def test_finish_with_a_result_completes_the_progress(engine):
    job_id, held = claimed(engine)
    result = {"kind": "adapter", "ref": "default/out-v1"}
    assert apply(
        engine,
        job_state.finish,
        held,
        JobStatus.SUCCEEDED,
        message="published",
        log_tail="done",
        result=result,
    )
    got = row(engine, job_id)
    assert (got["status"], got["progress"], got["result"]) == ("succeeded", 1.0, result)
    assert got["finished_at"] is not None and got["error"] is None

    # a finished job is finished: no second outcome, no release, no cancellation
    refused(engine, job_id, job_state.finish, held, JobStatus.FAILED, message="x", log_tail="")
    refused(engine, job_id, job_state.release, held, "ConnectionError: late")
    refused(engine, job_id, job_state.request_cancel, job_id)
    refused(engine, job_id, job_state.cancel_queued, job_id)


def test_finish_by_a_non_owner_is_refused(engine):
    job_id, held = claimed(engine)
    stranger = Claim(job_id, "w:2", held.attempt)
    for status in TERMINAL_STATUSES:
        refused(engine, job_id, job_state.finish, stranger, status, message="", log_tail="")


def test_finish_after_a_cancellation_is_refused(engine):
    job_id = insert(engine)
    assert apply(engine, job_state.cancel_queued, job_id)
    got = row(engine, job_id)
    assert (got["status"], got["cancel_requested"]) == ("cancelled", True)
    assert got["message"] == "cancelled before it started"
    # whatever a runner believed it held, a cancelled job stays cancelled
    held = Claim(job_id, "w:1", 1)
    for status in TERMINAL_STATUSES:
        refused(engine, job_id, job_state.finish, held, status, message="late", log_tail="")
    refused(engine, job_id, job_state.release, held, "late")


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_finish_only_takes_a_terminal_status(engine, status):
    job_id, held = claimed(engine)
    with pytest.raises(ValueError, match="not a terminal status"):
        apply(engine, job_state.finish, held, status, message="", log_tail="")
    assert row(engine, job_id)["status"] == "running"


def test_release_puts_the_job_back_with_a_bounded_error(engine):
    job_id, held = claimed(engine)
    assert apply(engine, job_state.release, held, "ConnectionError: " + "z" * 10_000)
    got = row(engine, job_id)
    assert (got["status"], got["worker"], got["heartbeat_at"]) == ("queued", "w:1", None)
    assert got["error"].startswith("retrying after: ConnectionError: zzz")
    assert len(got["error"]) <= ERROR_MAX and got["error"].endswith("(truncated)")
    # released once: the same claim cannot release (or finish) it again
    refused(engine, job_id, job_state.release, held, "again")
    refused(engine, job_id, job_state.finish, held, JobStatus.SUCCEEDED, message="", log_tail="")


# ------------------------------------------------------------------------- cancel


def test_cancel_of_a_running_job_only_asks(engine):
    job_id, held = claimed(engine)
    refused(engine, job_id, job_state.cancel_queued, job_id)
    assert apply(engine, job_state.request_cancel, job_id)
    got = row(engine, job_id)
    assert (got["status"], got["cancel_requested"]) == ("running", True)
    # the runner then ends it itself
    assert apply(engine, job_state.finish, held, JobStatus.CANCELLED, message="", log_tail="")
    assert row(engine, job_id)["status"] == "cancelled"


@pytest.mark.parametrize("status", TERMINAL_STATUSES)
def test_a_finished_job_cannot_be_cancelled(engine, status):
    job_id = insert(engine, status=status, finished_at=utcnow())
    refused(engine, job_id, job_state.cancel_queued, job_id)
    refused(engine, job_id, job_state.request_cancel, job_id)


# --------------------------------------------------------------------- reconciler


def apply_heartbeat_at(engine, job_id: str, when: datetime | None) -> None:
    """Age a running job's heartbeat (what a dead worker leaves behind)."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.heartbeat_at = when
        session.commit()


def test_cancel_abandoned_ends_only_requested_jobs_nobody_runs(engine):
    now, stale_before, stale = times()
    abandoned_queued = insert(engine, cancel_requested=True)
    abandoned_running = insert_running(engine, "w:0", stale, cancel_requested=True)
    live = insert_running(engine, "w:1", now, cancel_requested=True)
    not_requested = insert(engine)
    done = insert(engine, status="failed", cancel_requested=True, finished_at=stale)
    untouched = {job_id: row(engine, job_id) for job_id in (live, not_requested, done)}

    assert apply(engine, job_state.cancel_abandoned, stale_before=stale_before, now=now) == 2
    for job_id in (abandoned_queued, abandoned_running):
        got = row(engine, job_id)
        assert got["status"] == "cancelled" and got["finished_at"] is not None
        assert got["message"] == "cancelled (no worker was running it)"
    for job_id, before in untouched.items():
        assert row(engine, job_id) == before
    assert apply(engine, job_state.cancel_abandoned, stale_before=stale_before, now=now) == 0


def test_requeue_stale_recovers_a_dead_workers_job_once(engine):
    now, stale_before, stale = times()
    job_id, held = claimed(engine, worker="dead:1")
    live_id, _ = claimed(engine, worker="live:1")
    apply_heartbeat_at(engine, job_id, stale)
    with Session(engine) as session:
        assert job_state.stale_running(session, stale_before=stale_before) == [
            (job_id, "cpu", "dead:1")
        ]

    requeue = job_state.requeue_stale
    refused(engine, live_id, requeue, live_id, "live:1", stale_before=stale_before, now=now)
    assert apply(
        engine, job_state.requeue_stale, job_id, "dead:1", stale_before=stale_before, now=now
    )
    got = row(engine, job_id)
    assert (got["status"], got["heartbeat_at"]) == ("queued", None)
    assert got["message"] == "requeued: worker dead:1 stopped sending heartbeats"
    # a second reconciler finds it queued; the dead worker's claim is void
    refused(engine, job_id, requeue, job_id, "dead:1", stale_before=stale_before, now=now)
    refused(engine, job_id, job_state.heartbeat, held, progress=0.1, message=None, log_tail="")


def test_mark_sent_lets_one_reconciler_send_a_message(engine):
    now, _, stale = times()
    job_id = insert(engine, enqueued_at=stale)
    with Session(engine) as session:
        rows = job_state.unsent_queued(session, sent_before=now - STALE_AFTER)
    assert [r[0] for r in rows] == [job_id]
    last_sent = rows[0][3]

    assert apply(engine, job_state.mark_sent, job_id, last_sent, now=now)
    # another reconciler that read the same last send loses: the message went out once
    refused(engine, job_id, job_state.mark_sent, job_id, last_sent, now=now)
    with Session(engine) as session:
        assert job_state.unsent_queued(session, sent_before=now - STALE_AFTER) == []


def test_mark_sent_of_a_never_sent_job_and_of_a_claimed_job(engine):
    now, _, _ = times()
    never = insert(engine, enqueued_at=None)
    assert apply(engine, job_state.mark_sent, never, None, now=now)
    refused(engine, never, job_state.mark_sent, never, None, now=now)  # it was sent now

    job_id, _ = claimed(engine)
    refused(engine, job_id, job_state.mark_sent, job_id, now, now=now)
