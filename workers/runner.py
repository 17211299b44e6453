"""``run_job(job_id)``: the one code path every worker runs (Celery or embedded).

1. Claim the job atomically (``queued`` -> ``running``, or take over a
   ``running`` job whose heartbeat went stale). A duplicate delivery finds it
   claimed and returns.
2. Heartbeat in a thread: progress, log tail, and cancellation requests.
3. Run the job type's handler (``workers.jobs.<type>.run``) on inputs fetched
   from the object store; it returns a folder to publish.
4. Publish through the same publish service a client uses, with the job id as
   idempotency key, so a re-run never creates a second version.

Errors: invalid input fails the job at once with its message; transient
infrastructure errors (database, S3, network) put the job back to ``queued``
and raise :class:`TransientJobError` so the caller retries with backoff.

Every write to the job row is a transition of :mod:`registry.services.job_state`.
A claim is ``(worker, attempt)``: every later write of the runner (heartbeat,
finish, release) is conditional on the row still being ``running`` under that
claim. A runner whose job was taken over (its heartbeat went stale and the
reconciler re-enqueued it) stops at its next heartbeat and writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from loreg.refs import format_ref
from loreg.vocabulary import ArtifactKind, JobStatus, JobType
from registry.auth import Principal
from registry.errors import Conflict, RegistryError, ServiceUnavailable
from registry.models import (
    Adapter,
    BaseModelFile,
    BaseModelRecord,
    Job,
    Namespace,
    Version,
    VersionFile,
    utcnow,
)
from registry.services import job_state, publish
from registry.services.context import Context
from registry.services.job_state import MESSAGE_MAX, truncate
from registry.settings import Settings
from registry.storage.base import blob_key
from registry.validation.paths import validate_file_path
from workers.errors import JobInputError

log = logging.getLogger("loreg.worker")
LOG_TAIL_LINES = 200
LOG_LINE_MAX = 4096  # characters of one log-tail line


class JobCancelled(Exception):
    """The job was cancelled while running."""


class JobLost(JobCancelled):
    """Another worker took the job over (or it ended elsewhere): stop, write nothing."""


class TransientJobError(Exception):
    """An infrastructure error (database, S3, network): retry the job later."""


def is_transient(exc: BaseException) -> bool:
    """True for infrastructure errors (database, S3, network) worth retrying later."""
    if isinstance(
        exc,
        sa.exc.OperationalError | sa.exc.InterfaceError | ConnectionError | ServiceUnavailable,
    ):
        return True
    try:
        import botocore.exceptions as bce

        if isinstance(
            exc,
            bce.EndpointConnectionError
            | bce.ConnectionClosedError
            | bce.ReadTimeoutError
            | bce.ConnectTimeoutError,
        ):
            return True
        if isinstance(exc, bce.ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return status >= 500 or status == 429
    except ImportError:  # pragma: no cover - boto3 is a worker dependency
        pass
    return False


@dataclass
class JobOutput:
    """What a handler produced: a folder to publish as an adapter or a base model.

    Or nothing to publish: ``unchanged`` is then the job's result as it stands (a
    mirror sync whose upstream commit is already registered), and ``folder`` is None.
    """

    folder: Path | None
    kind: str = "adapter"
    lineage: list[dict[str, Any]] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None
    description: str | None = None
    unchanged: dict[str, Any] | None = None
    #: Added to the published result (what a mirror left out, the upstream commit ...).
    extra_result: dict[str, Any] = field(default_factory=dict)
    #: Tags of the version (``metadata.tags``; the Hub card's ``tags``).
    tags: list[str] = field(default_factory=list)


class JobContext:
    """What a handler may use: the job, a work dir, a device, inputs, progress reports."""

    def __init__(self, ctx: Context, job: Job, workdir: Path, cancel: threading.Event):
        self.ctx = ctx
        self.job = job
        self.workdir = workdir
        self._cancel = cancel
        self._lost = threading.Event()
        self.worker = job.worker or ""  # the claim: (worker, attempt)
        self.attempt = job.attempts
        self.progress = 0.0
        self.message: str | None = None
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._lock = threading.Lock()

    @property
    def claim(self) -> job_state.Claim:
        """This attempt's hold on the job row: every write of the runner is guarded by it."""
        return job_state.Claim(self.job.id, self.worker, self.attempt)

    def snapshot(self) -> tuple[float, str | None, str]:
        """``(progress, message, log tail)`` as the job row should show them now."""
        with self._lock:
            return self.progress, self.message, "\n".join(self.lines)

    @property
    def params(self) -> dict[str, Any]:
        """The job's validated parameters."""
        return self.job.params or {}

    def device(self):
        """``cuda`` when a GPU is present (and the job is not pinned to cpu), else ``cpu``."""
        import torch

        if self.job.queue != "cpu" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    @property
    def lost(self) -> bool:
        """True once the heartbeat found the job no longer claimed by this attempt."""
        return self._lost.is_set()

    def log(self, line: str) -> None:
        """Append a line to the job's log tail."""
        with self._lock:
            self.lines.append(truncate(line, LOG_LINE_MAX))
        log.info("job %s: %s", self.job.id, line)

    def report(self, fraction: float, message: str | None = None) -> None:
        """Record progress in [0, 1]; raises JobCancelled if cancellation was requested."""
        with self._lock:
            self.progress = max(0.0, min(1.0, float(fraction)))
            if message:
                self.message = truncate(message, MESSAGE_MAX)
                self.lines.append(truncate(message, LOG_LINE_MAX))
        self.check_cancelled()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled (JobLost if it was taken over)."""
        if self._lost.is_set():
            raise JobLost("the job was taken over by another worker")
        if self._cancel.is_set():
            raise JobCancelled("cancelled while running")

    def _download(self, rows: list[tuple[str, str]], dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        for path, sha in rows:
            target = dest / validate_file_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with open(target, "wb") as out:
                for chunk in self.ctx.store.open(blob_key(sha)):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != sha:
                raise TransientJobError(f"blob {sha} read back with another hash; retrying")
        return dest

    def fetch_version(self, version_id: int) -> Path:
        """Download a version's files into the work dir; returns the folder."""
        with Session(self.ctx.engine) as session:
            rows = session.exec(
                select(VersionFile.path, VersionFile.blob_sha256).where(
                    VersionFile.version_id == version_id
                )
            ).all()
        return self._download(list(rows), self.workdir / "inputs" / f"v{version_id}")

    def fetch_base_model(self, name: str) -> tuple[Path, BaseModelRecord]:
        """Download a registered base model's files; returns (folder, record)."""
        with Session(self.ctx.engine) as session:
            bm = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
            if bm is None:
                raise JobInputError(f"base model '{name}' is not registered")
            rows = session.exec(
                select(BaseModelFile.path, BaseModelFile.blob_sha256).where(
                    BaseModelFile.base_model_id == bm.id
                )
            ).all()
        return self._download(list(rows), self.workdir / "base" / f"b{bm.id}"), bm


HandlerFn = Callable[[JobContext], JobOutput]


def handler_for(job_type: str) -> HandlerFn:
    """The handler function of a job type (imported lazily: torch is loaded here)."""
    import importlib

    if job_type not in {t.value for t in JobType}:
        raise JobInputError(f"unknown job type {job_type!r}")
    return importlib.import_module(f"workers.jobs.{job_type}").run


# --------------------------------------------------------------------- job row state


def claim(ctx: Context, job_id: str, worker: str) -> Job | None:
    """Atomically take the job; None if another worker has it or it is finished.

    A claimable job whose attempts are used up is failed instead ("gave up").
    """
    now = utcnow()
    stale = now - timedelta(seconds=ctx.settings.job_stale_after_s)
    with Session(ctx.engine, expire_on_commit=False) as session:
        job = session.get(Job, job_id)
        if job is None:
            log.warning("job %s does not exist", job_id)
            return None
        if (
            job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
            and job.attempts >= ctx.settings.job_max_attempts
        ):
            # only if it could be claimed: a live last attempt is left alone
            job_state.give_up(session, job_id, job.attempts, job.error, stale_before=stale, now=now)
            session.commit()
            return None
        won = job_state.claim(session, job_id, worker, stale_before=stale, now=now)
        session.commit()
        if not won:
            return None
        return session.get(Job, job_id, populate_existing=True)  # the row as claimed


def _release(ctx: Context, jc: JobContext, error: str) -> bool:
    """Put a job back to ``queued`` after a transient error (it will be retried).

    False when the job is no longer this attempt's claim (nothing is written).
    """
    with Session(ctx.engine) as session:
        won = job_state.release(session, jc.claim, error)
        session.commit()
    return won


def _end(
    ctx: Context,
    jc: JobContext,
    status: JobStatus,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> str:
    """Finish this attempt's claim with ``status``; the row's status if the claim was lost."""
    _, message, log_tail = jc.snapshot()
    with Session(ctx.engine) as session:
        won = job_state.finish(
            session,
            jc.claim,
            status,
            message=message,
            log_tail=log_tail,
            error=error,
            result=result,
        )
        session.commit()
    if won:
        return str(status)
    return _lost(ctx, jc, f"not marking it {status}")


def _lost(ctx: Context, jc: JobContext, what: str) -> str:
    """Log that this attempt lost its claim; returns the status the job row holds now."""
    with Session(ctx.engine) as session:
        current = session.get(Job, jc.job.id)
    holder = (
        f"{current.status} on {current.worker}, attempt {current.attempts}" if current else "gone"
    )
    log.warning(
        "job %s attempt %d on %s lost its claim (now %s); %s",
        jc.job.id,
        jc.attempt,
        jc.worker,
        holder,
        what,
    )
    return current.status if current else "missing"


class Heartbeat:
    """Writes progress and liveness every few seconds; notices cancellation requests."""

    def __init__(self, ctx: Context, jc: JobContext, cancel: threading.Event, worker: str):
        self.ctx, self.jc, self.cancel, self.worker = ctx, jc, cancel, worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loreg-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def beat(self) -> None:
        """One heartbeat: write progress/log tail, read the cancellation flag.

        When the row is no longer this attempt's claim (another worker took it
        over, or it was ended elsewhere) the job is lost: the handler is stopped
        like a cancellation and nothing more is written.
        """
        progress, message, log_tail = self.jc.snapshot()
        held = job_state.Claim(self.jc.job.id, self.worker, self.jc.attempt)
        with Session(self.ctx.engine) as session:
            alive = job_state.heartbeat(
                session, held, progress=progress, message=message, log_tail=log_tail
            )
            session.commit()
            if not alive:
                self.jc._lost.set()
                self.cancel.set()
                self._stop.set()
                log.warning("job %s: %s lost its claim; stopping", self.jc.job.id, self.worker)
                return
            cancelled = session.exec(
                select(Job.cancel_requested).where(Job.id == self.jc.job.id)
            ).first()
        if cancelled:
            self.cancel.set()

    def _run(self) -> None:
        while not self._stop.wait(self.ctx.settings.job_heartbeat_s):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is not fatal
                log.warning("heartbeat of job %s failed: %s", self.jc.job.id, exc)


# --------------------------------------------------------------------------- publish


def publish_output(ctx: Context, job: Job, output: JobOutput) -> dict[str, Any]:
    """Publish a handler's folder with lineage, as the job; idempotent on the job id.

    An output with nothing to publish (``unchanged``) is the result as it stands.
    """
    if output.unchanged is not None:
        return output.unchanged
    if output.folder is None:
        raise ValueError("a job output without a folder must say its result (unchanged)")
    return {**_publish_folder(ctx, job, output, output.folder), **output.extra_result}


def _publish_folder(ctx: Context, job: Job, output: JobOutput, folder: Path) -> dict[str, Any]:
    kind = ArtifactKind(output.kind)
    spec = publish.PublishSpec(
        kind=kind,
        namespace=job.namespace if kind != ArtifactKind.BASE_MODEL else None,
        name=job.output,
        files=publish.folder_files(folder),
        base_model=output.base_model,
        description=output.description,
        metadata={
            "job_id": job.id,
            "card": output.card,
            **({"tags": output.tags} if output.tags else {}),
        },
        job_id=job.id,
        lineage=[publish.ParentLink.from_spec(edge) for edge in output.lineage],
    )
    try:
        _, view = publish.publish_server_side(ctx, Principal.for_job(job), spec)
    except (sa.exc.IntegrityError, Conflict):
        # another attempt of this job registered its result first (unique job id)
        existing = registered_result(ctx, job.id, output.kind)
        if existing is None:
            raise
        log.info("job %s: result already registered as %s", job.id, existing["ref"])
        return existing
    if kind == ArtifactKind.BASE_MODEL:
        return {"kind": kind.value, "ref": view["name"], "digest": view["digest"]}
    return {
        "kind": kind.value,
        "ref": view["ref"],
        "version": view["version"],
        "digest": view["digest"],
    }


def registered_result(ctx: Context, job_id: str, kind: str) -> dict[str, Any] | None:
    """The result already registered with ``job_id`` as idempotency key, or None."""
    with Session(ctx.engine) as session:
        if kind == "base_model":
            bm = session.exec(
                select(BaseModelRecord).where(BaseModelRecord.job_id == job_id)
            ).first()
            if bm is None:
                return None
            return {"kind": "base_model", "ref": bm.name, "digest": bm.digest}
        found = session.exec(
            select(Version, Adapter, Namespace)
            .join(Adapter, Adapter.id == Version.adapter_id)
            .join(Namespace, Namespace.id == Adapter.namespace_id)
            .where(Version.job_id == job_id)
        ).first()
        if found is None:
            return None
        version, adapter, ns = found
        return {
            "kind": kind,
            "ref": format_ref(ns.name, adapter.name, version=version.number),
            "version": version.number,
            "digest": version.digest,
        }


# ------------------------------------------------------------------------------ run


def worker_name() -> str:
    """host:pid of this worker process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(ctx: Context, job_id: str, *, worker: str | None = None) -> str:
    """Run one job to completion; returns its final status (or the status another holds).

    Raises TransientJobError after putting the job back to ``queued``.
    """
    worker = worker or worker_name()
    job = claim(ctx, job_id, worker)
    if job is None:
        with Session(ctx.engine) as session:
            current = session.get(Job, job_id)
            return current.status if current else "missing"
    cancel = threading.Event()
    with tempfile.TemporaryDirectory(prefix=f"loreg-job-{job_id}-") as tmp:
        jc = JobContext(ctx, job, Path(tmp), cancel)
        jc.log(f"attempt {job.attempts} on {worker}")
        try:
            with Heartbeat(ctx, jc, cancel, worker):
                output = handler_for(job.type)(jc)
                jc.report(0.95, "publishing the result")
                result = publish_output(ctx, job, output)
        except JobLost:
            return _lost(ctx, jc, "stopped without writing")
        except JobCancelled:
            jc.message = "cancelled"
            return _end(ctx, jc, JobStatus.CANCELLED)
        except Exception as exc:  # noqa: BLE001 - classified below
            if isinstance(exc, TransientJobError) or is_transient(exc):
                jc.log(f"transient error: {exc}")
                if not _release(ctx, jc, f"{type(exc).__name__}: {exc}"):
                    return _lost(ctx, jc, "not releasing it for a retry")
                raise TransientJobError(str(exc)) from exc
            message = _failure_message(exc)
            jc.log(f"failed: {message}")
            jc.message = "failed"
            if not isinstance(exc, JobInputError | RegistryError | ValueError):
                jc.log(traceback.format_exc(limit=5))
            return _end(ctx, jc, JobStatus.FAILED, error=message)
        jc.log(f"succeeded: {result.get('ref')}")
        done = "nothing new: already registered as" if result.get("skipped") else "published"
        if job.type == JobType.CARD:
            done = f"card {result.get('card_status')}:"
        jc.message = f"{done} {result.get('ref')}"
        return _end(ctx, jc, JobStatus.SUCCEEDED, result=result)


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, RegistryError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, JobInputError | ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


_PROCESS_CONTEXT: dict[str, Context] = {}


def context_for(settings: Settings) -> Context:
    """One service context per worker process and settings."""
    key = repr(settings)
    if key not in _PROCESS_CONTEXT:
        _PROCESS_CONTEXT[key] = Context.from_settings(settings)
    return _PROCESS_CONTEXT[key]


def run_job_in_process(settings: Settings, job_id: str, retries: int = 3) -> str:
    """Embedded executor entry point: run a job, retrying transient errors with backoff."""
    import time

    ctx = context_for(settings)
    for attempt in range(retries + 1):
        try:
            return run_job(ctx, job_id, worker=f"local:{os.getpid()}")
        except TransientJobError:
            if attempt == retries:
                raise
            time.sleep(min(2**attempt, 30))
    raise AssertionError("unreachable")  # pragma: no cover
