"""Jobs: submission (validated up front), views, listing, cancellation.

The job row in the database is the source of truth; a dispatcher (Celery, or
the embedded executor) only delivers ``run_job(job_id)`` to a worker. This
module imports no tensor library: the API process validates jobs without torch.
"""

from __future__ import annotations

import math
from typing import Any

from sqlmodel import Session, col, select

from loreg.errors import InvalidRefError
from loreg.refs import format_ref, validate_adapter_name
from loreg.vocabulary import (
    DENSITY_METHODS,
    FEDERATED_METHODS,
    TERMINAL_STATUSES,
    ArtifactKind,
    CombineMethod,
    JobStatus,
    JobType,
    Queue,
)
from registry.auth import Principal, require_scope
from registry.errors import Conflict, InvalidJob, InvalidName, NotFound
from registry.job_params import (
    CombineParams,
    CompressParams,
    JobInput,
    JobRequest,
    MirrorExportParams,
    MirrorImportParams,
    TrainParams,
)
from registry.models import Adapter, BaseModelFile, BaseModelRecord, Job, Namespace
from registry.services import audit, catalog, job_state, presets
from registry.services.pagination import Page, PageRequest, SortKey, paginate

_JOB_ORDER = (
    SortKey(col(Job.created_at), descending=True),
    SortKey(col(Job.id), descending=True),
)

__all__ = [
    "JobInput",
    "JobRequest",
    "cancel_job",
    "default_queue",
    "get_job",
    "job_view",
    "list_jobs",
    "submit_job",
]


def _resolve_inputs(
    session: Session,
    principal: Principal,
    inputs: list[JobInput],
    kind: str = ArtifactKind.ADAPTER,
) -> list[dict[str, Any]]:
    resolved = []
    for item in inputs:
        if not math.isfinite(item.weight):
            raise InvalidJob(f"input {item.ref}: weight must be a finite number")
        try:
            ns, adapter, version = catalog.resolve_ref(session, principal, item.ref)
        except NotFound as exc:
            raise NotFound(f"input {item.ref}: {exc.message}") from None
        if adapter.kind != kind:
            raise InvalidJob(f"input {item.ref} is a {adapter.kind}, not a {kind}")
        resolved.append(
            {
                "ref": format_ref(ns.name, adapter.name, version=version.number),
                "weight": item.weight,
                "version_id": version.id,
                "digest": version.digest,
                "base_model": version.base_model,
                "r": (version.summary or {}).get("r"),
            }
        )
    return resolved


def _same_base(resolved: list[dict[str, Any]]) -> str | None:
    bases = {r["base_model"] for r in resolved}
    if len(bases) > 1:
        listing = ", ".join(f"{r['ref']} -> {r['base_model'] or 'unknown'}" for r in resolved)
        raise InvalidJob(f"inputs target different base models: {listing}")
    return next(iter(bases), None)


def _check_combine(params: CombineParams, resolved: list[dict[str, Any]]) -> None:
    """What a combine's params need of its inputs (the params alone: ``CombineParams``)."""
    if len(resolved) < 1:
        raise InvalidJob("a combine job needs at least one input")
    method = params.method
    if method in FEDERATED_METHODS:
        weights = [r["weight"] for r in resolved]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidJob(
                f"method {method!r} takes client weights >= 0 with a positive sum, got {weights}"
            )
    if method == CombineMethod.FEDIT:
        ranks = {r["ref"]: r["r"] for r in resolved}
        if len({r for r in ranks.values() if r is not None}) > 1:
            listing = ", ".join(f"{ref} r={r}" for ref, r in ranks.items())
            raise InvalidJob(
                f"fedit averages factors and needs equal ranks ({listing}); "
                "use flora or delta_avg for mixed ranks"
            )


def _check_compress(params: CompressParams, resolved: list[dict[str, Any]]) -> None:
    """What a compress's params need of its input (the params alone: ``CompressParams``)."""
    if len(resolved) != 1:
        raise InvalidJob("a compress job takes exactly one input")
    current = resolved[0].get("r")
    if params.rank is not None and current is not None and params.rank > current:
        raise InvalidJob(f"params.rank {params.rank} is above the input's rank {current}")


def _registered_base(session: Session, name: str | None, what: str) -> BaseModelRecord:
    if not name:
        raise InvalidJob(f"{what}: the base model is unknown; push with --base-model")
    bm = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
    if bm is None:
        raise InvalidJob(f"{what}: base model '{name}' is not registered (loreg base push)")
    has_weights = session.exec(
        select(BaseModelFile.id).where(
            BaseModelFile.base_model_id == bm.id, col(BaseModelFile.path).like("%.safetensors")
        )
    ).first()
    if has_weights is None:
        raise InvalidJob(f"{what}: base model '{name}' has no stored weights")
    return bm


def _check_train(
    session: Session, principal: Principal, params: TrainParams, stored: dict[str, Any]
) -> None:
    """The base model, dataset and parent a train job names exist; pins their refs in ``stored``."""
    base = params.base_model
    _registered_base(session, base, "train")
    dataset = _resolve_inputs(
        session, principal, [JobInput(ref=params.dataset)], kind=ArtifactKind.DATASET
    )[0]
    stored["dataset"] = dataset["ref"]
    if params.continue_from is not None:
        parent = _resolve_inputs(session, principal, [JobInput(ref=params.continue_from)])[0]
        if parent["base_model"] != base:
            raise InvalidJob(
                f"params.continue_from {parent['ref']} targets base model "
                f"'{parent['base_model']}', not '{base}'"
            )
        stored["continue_from"] = parent["ref"]


def _check_mirror_target(session: Session, namespace: str, name: str) -> None:
    """A mirror's target is an adapter (or a name not taken yet), not a dataset."""
    found = session.exec(
        select(Adapter)
        .join(Namespace, col(Namespace.id) == Adapter.namespace_id)
        .where(Namespace.name == namespace, Adapter.name == name)
    ).first()
    if found is not None and found.kind != ArtifactKind.ADAPTER:
        raise InvalidJob(f"output {namespace}/{name} is a {found.kind}, not an adapter")


def default_queue(job_type: str, params: dict[str, Any]) -> str:
    """``gpu`` for work that is dense in the model size, ``cpu`` for low-rank work.

    Train, merge and the element-wise combine methods (ties, dare, magnitude
    prune: they build each module's dense delta) gain from a GPU; the low-rank
    methods and compress take seconds on a CPU. Workers consume both queues by
    default, and a job on ``gpu`` runs on the CPU of a worker that has no GPU.
    """
    if job_type in (JobType.TRAIN, JobType.MERGE):
        return Queue.GPU.value
    if job_type == JobType.COMBINE and params.get("method") in DENSITY_METHODS:
        return Queue.GPU.value
    return Queue.CPU.value


def submit_job(session: Session, principal: Principal, request: JobRequest) -> Job:
    """Validate a job request against the database and insert the job row (status ``queued``).

    The body's own checks (types, bounds, which params a method takes) ran when
    ``request`` was built (:mod:`registry.job_params`); these need the rows.
    """
    req = request.root
    namespace = catalog.checked_name(req.namespace or principal.default_namespace, "namespace")
    ns = catalog.get_namespace(session, namespace)
    if ns is None:
        if not principal.can(namespace, "write"):
            raise NotFound(f"namespace '{namespace}' not found")
    else:
        require_scope(principal, ns.name, ns.private, "write")
    params = req.params.stored()
    if req.type == JobType.MERGE:
        catalog.checked_base_model_name(req.output)
        require_scope(principal, "*", False, "write")
    else:
        try:
            validate_adapter_name(req.output)
        except InvalidRefError as exc:
            raise InvalidName(f"output: {exc}") from None
    resolved: list[dict[str, Any]] = []
    if isinstance(req.params, TrainParams):
        if req.inputs:
            raise InvalidJob(
                "a train job takes no inputs: use params.dataset and params.continue_from"
            )
        presets.apply(session, namespace, req.params.preset, req.params.model_fields_set, params)
        _check_train(session, principal, req.params, params)
    elif isinstance(req.params, MirrorImportParams):
        if req.inputs:
            raise InvalidJob("a mirror_import job takes no inputs: the upstream is params.repo")
        _check_mirror_target(session, namespace, req.output)
    elif isinstance(req.params, MirrorExportParams):
        resolved = _resolve_inputs(session, principal, req.inputs)
        if len(resolved) != 1:
            raise InvalidJob("a mirror_export job takes exactly one input: the version to export")
    else:
        resolved = _resolve_inputs(session, principal, req.inputs)
        base = _same_base(resolved)
        if isinstance(req.params, CombineParams):
            _check_combine(req.params, resolved)
        elif isinstance(req.params, CompressParams):
            _check_compress(req.params, resolved)
        else:
            if len(resolved) != 1:
                raise InvalidJob("a merge job takes exactly one input adapter")
            _registered_base(session, base, f"merge of {resolved[0]['ref']}")
            taken = session.exec(
                select(BaseModelRecord.id).where(BaseModelRecord.name == req.output)
            ).first()
            if taken is not None:
                raise Conflict(f"base model '{req.output}' already exists: choose another output")
    queue = req.queue or default_queue(req.type, params)
    job = Job(
        type=req.type,
        queue=queue,
        namespace=namespace,
        output=req.output,
        inputs=resolved,
        params=params,
        created_by=principal.name,
    )
    job_state.submit(session, job)
    audit.record(
        session,
        principal,
        "job.submit",
        namespace=namespace,
        target=job.id,
        before=None,
        after={
            "id": job.id,
            "type": job.type,
            "status": job.status,
            "queue": job.queue,
            "output": job.output,
            "inputs": [i["ref"] for i in resolved],
            "params": params,
        },
    )
    session.flush()
    return job


def get_job(session: Session, principal: Principal, job_id: str) -> Job:
    """The job if the caller may read its namespace, else 404."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job '{job_id}' not found")
    ns = catalog.get_namespace(session, job.namespace)
    if ns is not None and ns.private and not principal.can(job.namespace, "read"):
        raise NotFound(f"job '{job_id}' not found")
    return job


def job_view(job: Job) -> dict[str, Any]:
    """The JSON view of a job."""

    def ts(value):
        return value.isoformat() if value is not None else None

    return {
        "id": job.id,
        "type": job.type,
        "status": job.status,
        "queue": job.queue,
        "namespace": job.namespace,
        "output": job.output,
        "inputs": [{"ref": i["ref"], "weight": i["weight"]} for i in job.inputs or []],
        "params": job.params or {},
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "result": job.result,
        "created_by": job.created_by,
        "created_at": ts(job.created_at),
        "started_at": ts(job.started_at),
        "heartbeat_at": ts(job.heartbeat_at),
        "finished_at": ts(job.finished_at),
    }


def list_jobs(
    session: Session,
    principal: Principal,
    page: PageRequest,
    *,
    status: str | None = None,
    job_type: str | None = None,
    namespace: str | None = None,
) -> Page[Any]:
    """A page of the jobs visible to the caller, newest first, with optional filters.

    Keyset order ``(created_at, id)`` descending (the ``ix_jobs_created_at_id`` index);
    jobs of private namespaces the caller cannot read are left out in SQL. The
    registry's own ``card`` jobs (one per published version) are listed only when asked
    for by ``job_type``, so they do not drown the jobs people submitted.
    """
    query = select(Job)
    if status:
        query = query.where(Job.status == status)
    query = query.where(Job.type == job_type if job_type else Job.type != JobType.CARD)
    if namespace:
        query = query.where(Job.namespace == namespace)
    private = session.exec(select(Namespace.name).where(Namespace.private)).all()
    hidden = [name for name in private if not principal.can(name, "read")]
    if hidden:
        query = query.where(col(Job.namespace).not_in(hidden))
    filters = f"status={status or ''}|type={job_type or ''}|ns={namespace or ''}"
    return paginate(
        session,
        query,
        _JOB_ORDER,
        page,
        scope=f"jobs|{filters}",
        key_of=lambda job: (job.created_at, job.id),
        render=job_view,
    )


def cancel_job(session: Session, principal: Principal, job_id: str) -> Job:
    """Cancel a queued job at once; ask a running one to stop (it checks between steps).

    Both are conditional updates (:mod:`registry.services.job_state`), so a
    worker claiming the job at the same moment is never overwritten: whichever
    commits first wins, and a job a worker just claimed still gets
    ``cancel_requested``.
    """
    job = get_job(session, principal, job_id)
    ns = catalog.get_namespace(session, job.namespace)
    require_scope(principal, job.namespace, bool(ns and ns.private), "write")
    if job.status in TERMINAL_STATUSES:
        raise Conflict(f"job '{job_id}' already {job.status}")
    status_before = job.status
    job_state.cancel_queued(session, job_id)
    job_state.request_cancel(session, job_id)
    session.refresh(job)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise Conflict(f"job '{job_id}' already {job.status}")
    audit.record(
        session,
        principal,
        "job.cancel",
        namespace=job.namespace,
        target=job.id,
        before={"status": status_before},
        after={"status": job.status, "cancel_requested": job.cancel_requested},
    )
    session.flush()
    return job
