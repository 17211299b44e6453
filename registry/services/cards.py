"""Computed cards: one ``version_cards`` row per version, filled by a ``card`` job.

docs/design.md §7 ("Cards") has the design; in short:

* **publish**: :func:`request_card` runs inside the publish transaction
  (:func:`registry.services.publish.versions.write_version`, the one place every
  version is written), inserting the ``pending`` row and its ``card`` job (queue
  ``cpu``) with the version, so a committed version always has both. The job is
  sent after the commit (:func:`dispatch`); a lost send is re-sent by the reconciler.
* **the job** (``workers/jobs/card.py``) computes the card from the weights and
  ends the row with :func:`record_ready` or :func:`record_failed`, each an UPDATE
  guarded by the row's ``job_id``: a newer job (a retry) supersedes an older one.
* **back-fill**: :func:`backfill_batch` gives versions without a row (published
  before cards existed) a pending row and a job, a bounded batch per transaction;
  ``loreg serve``'s leader runs :class:`Backfill` at start, admins call
  ``POST /v1/admin/cards/backfill`` (``loreg admin cards --backfill``).
* **reads**: :func:`card_view` (the API), :func:`card_statuses` (adapter detail),
  :func:`card_text` (what search indexes). A ``pending`` row whose job ended
  without finishing it (attempts used up, cancelled) reads as ``failed``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from loreg.refs import format_ref
from loreg.vocabulary import CardStatus, JobStatus, JobType, Queue
from registry.auth import Principal, require_scope
from registry.errors import NotFound
from registry.models import Adapter, Job, Namespace, Version, VersionCard, utcnow
from registry.services import catalog, job_state
from registry.services.card_status import card_statuses, card_text, effective_status
from registry.services.context import Context
from registry.services.job_state import ERROR_MAX, truncate

__all__ = [
    "Backfill",
    "backfill_batch",
    "card_jobs_in_flight",
    "card_statuses",
    "card_text",
    "card_view",
    "dispatch",
    "effective_status",
    "pending_job",
    "recompute",
    "record_failed",
    "record_ready",
    "request_card",
]

log = logging.getLogger("loreg.cards")

#: Bytes of a version's README.md kept with its card (the rest is cut, on a UTF-8 boundary).
README_MAX_BYTES = 64 * 1024
#: Versions given a pending card per back-fill transaction.
BACKFILL_BATCH = 500
#: Most versions one ``POST /v1/admin/cards/backfill`` call may take.
MAX_BACKFILL_BATCH = 5000

Enqueue = Callable[[str, str], None]
_NO_SYNC = {"synchronize_session": False}


# --------------------------------------------------------------------------- writes


def request_card(
    session: Session, version: Version, ns: Namespace, adapter: Adapter, created_by: str | None
) -> Job:
    """Give ``version`` a ``pending`` card row and a queued ``card`` job, in ``session``.

    An existing row (a retry) is reset to pending and handed to the new job. The
    caller commits, then sends the job (:func:`dispatch`).
    """
    assert version.id is not None, "a version flushed to the database"
    job = Job(
        type=JobType.CARD,
        queue=Queue.CPU,
        namespace=ns.name,
        output=adapter.name,
        inputs=[
            {
                "ref": format_ref(ns.name, adapter.name, version=version.number),
                "weight": 1.0,
                "version_id": version.id,
                "digest": version.digest,
            }
        ],
        params={},
        created_by=created_by,
    )
    job_state.submit(session, job)
    row = session.get(VersionCard, version.id)
    if row is None:
        row = VersionCard(version_id=version.id, status=CardStatus.PENDING, job_id=job.id)
    else:
        row.status, row.job_id, row.error, row.card = CardStatus.PENDING, job.id, None, None
        row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return job


def dispatch(ctx: Context, jobs: Iterable[tuple[str, str]], enqueue: Enqueue | None = None) -> int:
    """Send committed card jobs ``(id, queue)``; a failed send is logged (the reconciler
    re-sends queued jobs). Returns how many were sent."""
    send = enqueue or ctx.dispatcher.enqueue
    sent = 0
    for job_id, queue in jobs:
        try:
            send(job_id, queue)
            sent += 1
        except Exception as exc:  # noqa: BLE001 - the reconciler re-sends queued jobs
            log.warning("could not enqueue card job %s now (%s); it will be re-sent", job_id, exc)
    return sent


def pending_job(session: Session, version_id: int) -> tuple[str, str] | None:
    """``(job id, queue)`` of the version's card job if it is still queued, else None."""
    found = session.exec(
        select(Job.id, Job.queue)
        .join(VersionCard, col(VersionCard.job_id) == col(Job.id))
        .where(VersionCard.version_id == version_id, Job.status == JobStatus.QUEUED)
    ).first()
    return (found[0], found[1]) if found is not None else None


def _finish(session: Session, version_id: int, job_id: str, **values: Any) -> bool:
    statement = (
        sa.update(VersionCard)
        .where(col(VersionCard.version_id) == version_id, col(VersionCard.job_id) == job_id)
        .values(updated_at=utcnow(), **values)
    )
    result = cast(sa.CursorResult[Any], session.execute(statement, execution_options=_NO_SYNC))
    return (result.rowcount or 0) == 1


def record_ready(
    session: Session, version_id: int, job_id: str, card: dict[str, Any], readme: str | None
) -> bool:
    """End the row ``ready`` with its card and README; False if another job owns it now."""
    return _finish(
        session,
        version_id,
        job_id,
        status=CardStatus.READY,
        card=card,
        readme=readme,
        error=None,
    )


def record_failed(session: Session, version_id: int, job_id: str, error: str) -> bool:
    """End the row ``failed`` with ``error``; False if another job owns it now."""
    return _finish(
        session, version_id, job_id, status=CardStatus.FAILED, error=truncate(error, ERROR_MAX)
    )


# --------------------------------------------------------------------------- back-fill


def _without_card(retry_failed: bool) -> Any:
    """Versions the back-fill takes: no card row (or, with ``retry_failed``, a failed one)."""
    missing = col(VersionCard.version_id).is_(None)
    if not retry_failed:
        return missing
    return sa.or_(missing, col(VersionCard.status) == CardStatus.FAILED)


def backfill_batch(
    ctx: Context,
    *,
    limit: int = BACKFILL_BATCH,
    retry_failed: bool = False,
    created_by: str | None = "loreg:backfill",
    enqueue: Enqueue | None = None,
    count_remaining: bool = True,
) -> dict[str, int]:
    """Give up to ``limit`` versions without a card a pending row and a job; send the jobs.

    One transaction: a concurrent back-fill that took the same versions first makes
    this one's INSERT fail and roll back whole (each version gets one row and one
    job). Returns ``{"submitted": n, "remaining": versions still without a card}``
    (``remaining`` -1 without ``count_remaining``: the count reads every version).
    """
    limit = max(1, min(int(limit), MAX_BACKFILL_BATCH))
    submitted: list[tuple[str, str]] = []
    with Session(ctx.engine, expire_on_commit=False) as session:
        rows = session.exec(
            select(Version, Adapter, Namespace)
            .join(Adapter, col(Adapter.id) == Version.adapter_id)
            .join(Namespace, col(Namespace.id) == Adapter.namespace_id)
            .outerjoin(VersionCard, col(VersionCard.version_id) == Version.id)
            .where(_without_card(retry_failed))
            .order_by(col(Version.id))
            .limit(limit)
        ).all()
        for version, adapter, ns in rows:
            job = request_card(session, version, ns, adapter, created_by)
            submitted.append((job.id, job.queue))
        try:
            session.commit()
        except sa.exc.IntegrityError:
            session.rollback()
            log.info("card back-fill: another back-fill took this batch first")
            submitted = []
    dispatch(ctx, submitted, enqueue)
    remaining = count_without_card(ctx, retry_failed) if count_remaining else -1
    return {"submitted": len(submitted), "remaining": remaining}


def count_without_card(ctx: Context, retry_failed: bool = False) -> int:
    """How many versions have no card row (plus failed ones with ``retry_failed``)."""
    with Session(ctx.engine) as session:
        return int(
            session.exec(
                select(func.count(col(Version.id)))
                .select_from(Version)
                .outerjoin(VersionCard, col(VersionCard.version_id) == Version.id)
                .where(_without_card(retry_failed))
            ).one()
        )


def card_jobs_in_flight(ctx: Context) -> int:
    """How many card jobs are queued or running (the back-fill's throttle)."""
    with Session(ctx.engine) as session:
        return int(
            session.exec(
                select(func.count(col(Job.id))).where(
                    Job.type == JobType.CARD,
                    col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                )
            ).one()
        )


class Backfill:
    """The leader's start-up back-fill: batches until every version has a card row.

    A daemon thread. It submits the next batch only once fewer than ``batch`` card
    jobs are in flight, so a large catalog never has more than about two batches of
    card jobs queued (the embedded executor holds its queue in memory). It ends when
    a batch submits nothing; an error is logged and ends it (the next start, or an
    admin's back-fill, carries on).
    """

    def __init__(
        self, ctx: Context, enqueue: Enqueue, batch: int = BACKFILL_BATCH, poll_s: float = 2.0
    ):
        self.ctx, self.enqueue, self.batch, self.poll_s = ctx, enqueue, batch, poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loreg-card-backfill", daemon=True)
        self.submitted = 0

    def start(self) -> Backfill:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batch in progress."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if card_jobs_in_flight(self.ctx) >= self.batch:
                    self._stop.wait(self.poll_s)
                    continue
                report = backfill_batch(
                    self.ctx, limit=self.batch, enqueue=self.enqueue, count_remaining=False
                )
                self.submitted += report["submitted"]
                if report["submitted"] == 0:
                    break
        except Exception as exc:  # noqa: BLE001 - a back-fill must not take the server down
            log.warning("card back-fill stopped: %s", exc)
        if self.submitted:
            log.info("card back-fill: %d card jobs submitted", self.submitted)


# --------------------------------------------------------------------------- reads


def _row_and_job(session: Session, version_id: int) -> tuple[VersionCard | None, Job | None]:
    row = session.get(VersionCard, version_id)
    job = session.get(Job, row.job_id) if row is not None and row.job_id else None
    return row, job


def _version_rows(
    session: Session, principal: Principal, namespace: str, name: str, number: int
) -> tuple[Namespace, Adapter, Version]:
    ns, adapter = catalog.get_adapter(session, principal, namespace, name)
    version = session.exec(
        select(Version).where(Version.adapter_id == adapter.id, Version.number == number)
    ).first()
    if version is None:
        raise NotFound(f"'{ns.name}/{adapter.name}-v{number}' not found")
    return ns, adapter, version


def card_view(
    session: Session, principal: Principal, namespace: str, name: str, number: int
) -> dict[str, Any]:
    """``GET /v1/adapters/{ns}/{name}/versions/{n}/card``: status, card, README, error."""
    ns, adapter, version = _version_rows(session, principal, namespace, name, number)
    assert version.id is not None  # read from the table
    row, job = _row_and_job(session, version.id)
    status, error = effective_status(row, job)
    return {
        "namespace": ns.name,
        "name": adapter.name,
        "version": version.number,
        "ref": format_ref(ns.name, adapter.name, version=version.number),
        "digest": version.digest,
        "card_status": status,
        "card": row.card if row is not None and status == CardStatus.READY else None,
        "readme": row.readme if row is not None and status == CardStatus.READY else None,
        "error": error,
        "job_id": row.job_id if row is not None else None,
        "updated_at": row.updated_at.isoformat() if row is not None else None,
    }


def recompute(
    ctx: Context, principal: Principal, namespace: str, name: str, number: int
) -> dict[str, Any]:
    """Submit a new card job for one version (write scope): retries a failed card."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        ns, adapter, version = _version_rows(session, principal, namespace, name, number)
        require_scope(principal, ns.name, ns.private, "write")
        job = request_card(session, version, ns, adapter, principal.name)
        session.commit()
        sent = (job.id, job.queue)
    dispatch(ctx, [sent])
    with Session(ctx.engine) as session:
        return card_view(session, principal, namespace, name, number)


#: Card facts worth indexing as text (strings, or lists of strings), in this order.
