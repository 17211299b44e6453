"""The mirror list: upstream Hub repos kept in sync with loreg adapters, and their syncs.

A mirror says "adapter ``namespace/name`` follows upstream repo ``repo`` at
``revision``" (upstream: the server's ``LOREG_HUB_URL``). A sync is a
``mirror_import`` job (:mod:`workers.jobs.mirror_import`): it publishes a new
version when the upstream commit is new, and changes nothing otherwise, so every
sync is idempotent and a duplicate sync is only wasted work.

Syncs are submitted by ``POST /v1/mirrors/{id}/sync`` (one mirror, now),
``POST /v1/mirrors/sync`` (every due mirror the caller may write) and the
scheduler (:func:`scheduled_pass`, run every ``LOREG_MIRROR_POLL_S`` by
:class:`MirrorScheduler`). The scheduler runs wherever the reconciler does (the
embedded server, or each worker's main process), so several loops may run at once;
each due mirror is claimed by one conditional UPDATE that moves its
``next_sync_at`` past now, and only the loop whose UPDATE matched submits its job.
That claim is the leader election, per mirror and due time. A mirror whose last
job is still queued or running gets no second one.

The ``last_*`` columns are copied from the mirror's last job whenever mirrors are
listed or synced (the job row stays the source of truth).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from loreg.errors import InvalidRefError, ValidationFailedError
from loreg.hub_refs import format_upstream, validate_repo_id, validate_revision
from loreg.refs import validate_adapter_name
from loreg.vocabulary import TERMINAL_STATUSES, JobStatus, JobType, MirrorDirection
from registry.auth import Principal, require_scope
from registry.errors import Conflict, InvalidName, InvalidRequest, NotFound
from registry.job_params import JobRequest, MirrorImportJob, MirrorImportParams
from registry.models import Job, Mirror, Namespace, utcnow
from registry.schemas import MirrorRequest
from registry.services import audit, catalog, jobs
from registry.services.context import Context
from registry.services.periodic import PeriodicThread

log = logging.getLogger("loreg.mirrors")
Enqueue = Callable[[str, str], None]
_IN_FLIGHT = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def _ts(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def mirror_view(mirror: Mirror, hub_url: str) -> dict[str, Any]:
    """The JSON view of a mirror (``registry.schemas.MirrorView``)."""
    return {
        "id": mirror.id,
        "direction": mirror.direction,
        "upstream": format_upstream(mirror.repo_id, mirror.revision),
        "repo": mirror.repo_id,
        "revision": mirror.revision,
        "hub_url": hub_url,
        "namespace": mirror.namespace,
        "name": mirror.name,
        "interval_s": mirror.interval_s,
        "next_sync_at": _ts(mirror.next_sync_at),
        "last_job_id": mirror.last_job_id,
        "last_status": mirror.last_status,
        "last_commit": mirror.last_commit,
        "last_error": mirror.last_error,
        "last_synced_at": _ts(mirror.last_synced_at),
        "created_by": mirror.created_by,
        "created_at": _ts(mirror.created_at),
    }


def _checked_target(session: Session, principal: Principal, namespace: str, name: str) -> str:
    """The target namespace, after checking the caller may write it (like a job's output)."""
    namespace = catalog.checked_name(namespace, "namespace")
    try:
        validate_adapter_name(name)
    except InvalidRefError as exc:
        raise InvalidName(f"name: {exc}") from None
    ns = catalog.get_namespace(session, namespace)
    if ns is None:
        if not principal.can(namespace, "write"):
            raise NotFound(f"namespace '{namespace}' not found")
    else:
        require_scope(principal, ns.name, ns.private, "write")
    return namespace


def add_mirror(session: Session, principal: Principal, body: MirrorRequest) -> Mirror:
    """Record a new import mirror (write scope on the target); 409 if the target has one."""
    try:
        validate_repo_id(body.repo)
        validate_revision(body.revision)
    except ValidationFailedError as exc:
        raise InvalidRequest(str(exc)) from None
    namespace = _checked_target(
        session, principal, body.namespace or principal.default_namespace, body.name
    )
    taken = session.exec(
        select(Mirror).where(
            Mirror.direction == MirrorDirection.IMPORT.value,
            Mirror.namespace == namespace,
            Mirror.name == body.name,
        )
    ).first()
    if taken is not None:
        raise Conflict(
            f"{namespace}/{body.name} already mirrors "
            f"{format_upstream(taken.repo_id, taken.revision)} (mirror {taken.id}): "
            f"remove it first (loreg mirror rm {taken.id})"
        )
    mirror = Mirror(
        direction=MirrorDirection.IMPORT.value,
        repo_id=body.repo,
        revision=body.revision,
        namespace=namespace,
        name=body.name,
        interval_s=body.interval_s,
        next_sync_at=utcnow() if body.interval_s else None,
        created_by=principal.name,
    )
    session.add(mirror)
    session.flush()
    audit.record(
        session,
        principal,
        "mirror.add",
        namespace=namespace,
        target=f"{namespace}/{body.name}",
        before=None,
        after=_audited(mirror),
    )
    return mirror


def _audited(mirror: Mirror) -> dict[str, Any]:
    """What the audit log keeps of a mirror (its settings, not its sync state)."""
    return {
        "id": mirror.id,
        "direction": mirror.direction,
        "upstream": format_upstream(mirror.repo_id, mirror.revision),
        "target": f"{mirror.namespace}/{mirror.name}",
        "interval_s": mirror.interval_s,
    }


def _refresh(session: Session, mirror: Mirror) -> None:
    """Copy the last job's outcome into the mirror's ``last_*`` columns."""
    if mirror.last_job_id is None:
        return
    job = session.get(Job, mirror.last_job_id)
    if job is None or job.status == mirror.last_status:
        return
    mirror.last_status = job.status
    if job.status == JobStatus.SUCCEEDED:
        upstream = (job.result or {}).get("upstream") or {}
        mirror.last_commit = upstream.get("commit") or mirror.last_commit
        mirror.last_error = None
    elif job.status in TERMINAL_STATUSES:
        mirror.last_error = job.error
    if job.status in TERMINAL_STATUSES:
        mirror.last_synced_at = job.finished_at
    session.add(mirror)


def _hidden_namespaces(session: Session, principal: Principal) -> set[str]:
    """Private namespaces the caller cannot read."""
    private = session.exec(select(Namespace.name).where(Namespace.private)).all()
    return {name for name in private if not principal.can(name, "read")}


def list_mirrors(
    session: Session, principal: Principal, namespace: str | None = None
) -> list[Mirror]:
    """Mirrors the caller may see (private target namespaces need read), oldest first."""
    query = select(Mirror).order_by(col(Mirror.id))
    if namespace:
        query = query.where(Mirror.namespace == namespace)
    hidden = _hidden_namespaces(session, principal)
    found = [m for m in session.exec(query).all() if m.namespace not in hidden]
    for mirror in found:
        _refresh(session, mirror)
    return found


def get_mirror(
    session: Session, principal: Principal, mirror_id: int, scope: str | None = None
) -> Mirror:
    """The mirror if the caller may see it (404 if not) and holds ``scope`` on its target
    namespace (None: seeing it is enough, as in the list)."""
    mirror = session.get(Mirror, mirror_id)
    if mirror is None:
        raise NotFound(f"mirror {mirror_id} not found")
    ns = catalog.get_namespace(session, mirror.namespace)
    private = bool(ns and ns.private)
    if private and not principal.can(mirror.namespace, "read"):
        raise NotFound(f"mirror {mirror_id} not found")
    if scope is not None:
        require_scope(principal, mirror.namespace, private, scope)
    _refresh(session, mirror)
    return mirror


def remove_mirror(session: Session, principal: Principal, mirror_id: int) -> Mirror:
    """Delete a mirror (write scope on its target); its versions and jobs stay."""
    mirror = get_mirror(session, principal, mirror_id, "write")
    session.delete(mirror)
    audit.record(
        session,
        principal,
        "mirror.remove",
        namespace=mirror.namespace,
        target=f"{mirror.namespace}/{mirror.name}",
        before=_audited(mirror),
        after=None,
    )
    session.flush()
    return mirror


def _in_flight(session: Session, mirror: Mirror) -> Job | None:
    if mirror.last_job_id is None:
        return None
    job = session.get(Job, mirror.last_job_id)
    return job if job is not None and job.status in _IN_FLIGHT else None


def _submit(session: Session, principal: Principal, mirror: Mirror) -> Job:
    """Insert the mirror's ``mirror_import`` job (queued) and remember it on the mirror."""
    body = MirrorImportJob(
        type=JobType.MIRROR_IMPORT,
        params=MirrorImportParams(repo=mirror.repo_id, revision=mirror.revision),
        output=mirror.name,
        namespace=mirror.namespace,
    )
    job = jobs.submit_job(session, principal, JobRequest(body))
    mirror.last_job_id = job.id
    mirror.last_status = job.status
    session.add(mirror)
    session.flush()
    return job


def sync_mirror(session: Session, principal: Principal, mirror: Mirror) -> tuple[Job, bool]:
    """Submit a sync job for ``mirror`` now: ``(job, True)``, or ``(job in flight, False)``."""
    running = _in_flight(session, mirror)
    if running is not None:
        return running, False
    if mirror.interval_s:
        mirror.next_sync_at = utcnow() + timedelta(seconds=mirror.interval_s)
    return _submit(session, principal, mirror), True


def due_mirrors(session: Session, principal: Principal) -> list[Mirror]:
    """Scheduled mirrors whose next sync time has passed and that the caller may write."""
    now = utcnow()
    query = (
        select(Mirror)
        .where(col(Mirror.interval_s).is_not(None), col(Mirror.next_sync_at) <= now)
        .order_by(col(Mirror.id))
    )
    return [m for m in session.exec(query).all() if principal.can(m.namespace, "write")]


def _claim(session: Session, mirror: Mirror, now: Any) -> bool:
    """Move a due mirror's ``next_sync_at`` one interval past now; whether this UPDATE won."""
    assert mirror.interval_s is not None  # only scheduled mirrors are claimed
    statement = (
        sa.update(Mirror)
        .where(
            col(Mirror.id) == mirror.id,
            col(Mirror.next_sync_at).is_not(None),
            col(Mirror.next_sync_at) <= now,
        )
        .values(next_sync_at=now + timedelta(seconds=mirror.interval_s))
    )
    result = cast(
        sa.CursorResult[Any],
        session.execute(statement, execution_options={"synchronize_session": False}),
    )
    return (result.rowcount or 0) == 1


def scheduled_pass(ctx: Context, enqueue: Enqueue) -> list[str]:
    """One scheduler pass: submit a sync job for every due mirror; returns the job ids.

    Each mirror is claimed (:func:`_claim`) and its job inserted in one transaction,
    so of several loops only one submits it; the message is sent after the commit
    (the reconciler re-sends it if that send is lost). A mirror whose last job is
    still in flight is skipped and stays due.
    """
    now = utcnow()
    submitted: list[tuple[str, str]] = []
    with Session(ctx.engine, expire_on_commit=False) as session:
        due = session.exec(
            select(Mirror)
            .where(col(Mirror.interval_s).is_not(None), col(Mirror.next_sync_at) <= now)
            .order_by(col(Mirror.id))
        ).all()
        for mirror in due:
            assert mirror.id is not None  # read from the table
            _refresh(session, mirror)
            if _in_flight(session, mirror) is not None:
                session.commit()
                continue
            if not _claim(session, mirror, now):
                session.rollback()  # another loop took it
                continue
            try:
                job = _submit(session, Principal.for_mirror(mirror.id, mirror.namespace), mirror)
            except Exception as exc:  # noqa: BLE001 - one broken mirror must not stop the rest
                session.rollback()
                log.warning("mirror %s: could not submit its sync (%s)", mirror.id, exc)
                continue
            session.commit()
            submitted.append((job.id, job.queue))
    for job_id, queue in submitted:
        try:
            enqueue(job_id, queue)
        except Exception as exc:  # noqa: BLE001 - the reconciler re-sends queued jobs
            log.warning("could not enqueue mirror sync job %s (%s); will be re-sent", job_id, exc)
    return [job_id for job_id, _ in submitted]


class MirrorScheduler(PeriodicThread):
    """A daemon thread running :func:`scheduled_pass` every ``interval_s`` seconds."""

    def __init__(self, ctx: Context, enqueue: Enqueue, interval_s: float):
        super().__init__(interval_s, name="mirror-scheduler", first_pass_now=True)
        self.ctx = ctx
        self.enqueue = enqueue

    def run_once(self) -> list[str]:
        """One pass; errors (database down) are logged, not raised."""
        try:
            return scheduled_pass(self.ctx, self.enqueue)
        except Exception as exc:  # noqa: BLE001 - keep scheduling after outages
            log.warning("mirror scheduler pass failed: %s", exc)
            return []
        finally:
            self.passes += 1


def start_periodic(ctx: Context, enqueue: Enqueue) -> MirrorScheduler | None:
    """Start the scheduler thread unless ``LOREG_MIRROR_POLL_S`` is 0."""
    if ctx.settings.mirror_poll_s <= 0:
        return None
    return MirrorScheduler(ctx, enqueue, ctx.settings.mirror_poll_s).start()
