"""Jobs: submission (validated up front), views, listing, cancellation.

The job row in the database is the source of truth; a dispatcher (Celery, or
the embedded executor) only delivers ``run_job(job_id)`` to a worker. This
module imports no tensor library: the API process validates jobs without torch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field
from sqlmodel import Session, select

from loreg.errors import InvalidRefError
from loreg.refs import format_ref, validate_adapter_name
from loreg.vocabulary import TERMINAL_STATUSES, JobStatus
from registry.auth import Principal, require_scope
from registry.errors import Conflict, InvalidJob, InvalidName, NotFound
from registry.models import BaseModelFile, BaseModelRecord, Job, Namespace
from registry.schemas import StrictBody
from registry.services import audit, catalog, job_state

JOB_TYPES = ("combine", "compress", "merge", "train")
COMBINE_METHODS = (
    "cat",
    "linear",
    "svd",
    "ties",
    "dare_linear",
    "dare_ties",
    "magnitude_prune",
    "fedit",
    "flora",
    "delta_avg",
)
DENSITY_METHODS = ("ties", "dare_linear", "dare_ties", "magnitude_prune")
SIGN_METHODS = ("ties", "dare_ties")
EXACT_FULL_RANK = ("cat", "flora", "fedit")
FEDERATED_METHODS = ("fedit", "flora", "delta_avg")
RANK_REQUIRED = ("svd", "ties", "dare_linear", "dare_ties", "magnitude_prune", "delta_avg")
PRESETS = {"small": (4, 8), "medium": (8, 16), "large": (16, 32), "xlarge": (32, 64)}
PRECISIONS = ("fp16", "bf16", "int8")
MAX_RANK = 4096


class JobInput(StrictBody):
    """One input adapter of a job, with its weight (combine)."""

    ref: str = Field(min_length=1, max_length=300)
    weight: float = 1.0


class JobRequest(StrictBody):
    """Body of ``POST /v1/jobs`` (bounded like every request body: see ``StrictBody``)."""

    type: Literal["combine", "compress", "merge", "train"]
    inputs: list[JobInput] = Field(default_factory=list, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    output: str = Field(min_length=1, max_length=256)
    namespace: str | None = Field(default=None, max_length=64)
    queue: Literal["gpu", "cpu"] | None = None


def _number(
    params: dict[str, Any],
    key: str,
    lo: float,
    hi: float,
    *,
    integer: bool = False,
    required: bool = False,
    lo_open: bool = False,
) -> Any:
    value = params.get(key)
    if value is None:
        if required:
            raise InvalidJob(f"params.{key} is required")
        return None
    kind = int if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise InvalidJob(f"params.{key} must be {'an integer' if integer else 'a number'}")
    if value < lo or value > hi or (lo_open and value == lo):
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise InvalidJob(f"params.{key} = {value} is out of range {bound}")
    return value


def _only(params: dict[str, Any], allowed: set[str], job_type: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidJob(
            f"unknown params for a {job_type} job: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _resolve_inputs(
    session: Session, principal: Principal, inputs: list[JobInput], kind: str = "adapter"
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


def _check_combine(params: dict[str, Any], resolved: list[dict[str, Any]]) -> None:
    _only(params, {"method", "density", "rank", "seed", "majority_sign_method"}, "combine")
    if len(resolved) < 1:
        raise InvalidJob("a combine job needs at least one input")
    method = params.get("method", "linear")
    if method not in COMBINE_METHODS:
        raise InvalidJob(f"params.method {method!r} is not one of {', '.join(COMBINE_METHODS)}")
    params["method"] = method
    rank = _number(params, "rank", 1, MAX_RANK, integer=True, required=method in RANK_REQUIRED)
    density = _number(params, "density", 0.0, 1.0, lo_open=True, required=method in DENSITY_METHODS)
    if density is not None and method not in DENSITY_METHODS:
        raise InvalidJob(f"params.density has no meaning for method {method!r}")
    _number(params, "seed", 0, 2**63 - 1, integer=True)
    sign = params.get("majority_sign_method")
    if sign is not None:
        if sign not in ("total", "frequency"):
            raise InvalidJob("params.majority_sign_method must be 'total' or 'frequency'")
        if method not in SIGN_METHODS:
            raise InvalidJob(
                f"params.majority_sign_method applies to {', '.join(SIGN_METHODS)} only, "
                f"not {method!r}"
            )
    if method in EXACT_FULL_RANK and rank is not None:
        raise InvalidJob(f"method {method!r} does not truncate and takes no rank: drop params.rank")
    if method in FEDERATED_METHODS:
        weights = [r["weight"] for r in resolved]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidJob(
                f"method {method!r} takes client weights >= 0 with a positive sum, got {weights}"
            )
    if method == "fedit":
        ranks = {r["ref"]: r["r"] for r in resolved}
        if len({r for r in ranks.values() if r is not None}) > 1:
            listing = ", ".join(f"{ref} r={r}" for ref, r in ranks.items())
            raise InvalidJob(
                f"fedit averages factors and needs equal ranks ({listing}); "
                "use flora or delta_avg for mixed ranks"
            )


def _check_compress(params: dict[str, Any], resolved: list[dict[str, Any]]) -> None:
    _only(params, {"rank", "energy", "precision"}, "compress")
    if len(resolved) != 1:
        raise InvalidJob("a compress job takes exactly one input")
    rank = _number(params, "rank", 1, MAX_RANK, integer=True)
    energy = _number(params, "energy", 0.0, 1.0, lo_open=True)
    precision = params.get("precision")
    if precision is not None and precision not in PRECISIONS:
        raise InvalidJob(f"params.precision must be one of {', '.join(PRECISIONS)}")
    if rank is None and energy is None and precision is None:
        raise InvalidJob("a compress job needs params.rank, params.energy or params.precision")
    if rank is not None and energy is not None:
        raise InvalidJob("give params.rank or params.energy, not both")
    current = resolved[0].get("r")
    if rank is not None and current is not None and rank > current:
        raise InvalidJob(f"params.rank {rank} is above the input's rank {current}")


def _registered_base(session: Session, name: str | None, what: str) -> BaseModelRecord:
    if not name:
        raise InvalidJob(f"{what}: the base model is unknown; push with --base-model")
    bm = session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()
    if bm is None:
        raise InvalidJob(f"{what}: base model '{name}' is not registered (loreg base push)")
    has_weights = session.exec(
        select(BaseModelFile.id).where(
            BaseModelFile.base_model_id == bm.id, BaseModelFile.path.like("%.safetensors")
        )
    ).first()
    if has_weights is None:
        raise InvalidJob(f"{what}: base model '{name}' has no stored weights")
    return bm


def _check_train(session: Session, principal: Principal, params: dict[str, Any]) -> None:
    _only(
        params,
        {
            "base_model",
            "dataset",
            "preset",
            "steps",
            "epochs",
            "lr",
            "seed",
            "max_length",
            "batch_size",
            "eval_fraction",
            "continue_from",
            "target_modules",
            "r",
            "lora_alpha",
        },
        "train",
    )
    base = params.get("base_model")
    if not isinstance(base, str):
        raise InvalidJob("params.base_model (a registered base model name) is required")
    _registered_base(session, base, "train")
    if not isinstance(params.get("dataset"), str):
        raise InvalidJob("params.dataset (a dataset ref, see `loreg dataset push`) is required")
    dataset = _resolve_inputs(
        session, principal, [JobInput(ref=params["dataset"])], kind="dataset"
    )[0]
    params["dataset"] = dataset["ref"]
    preset = params.setdefault("preset", "small")
    if preset not in PRESETS:
        raise InvalidJob(f"params.preset must be one of {', '.join(PRESETS)}")
    _number(params, "steps", 1, 1_000_000, integer=True)
    _number(params, "epochs", 1, 1000, integer=True)
    _number(params, "lr", 0.0, 1.0, lo_open=True)
    _number(params, "seed", 0, 2**63 - 1, integer=True)
    _number(params, "max_length", 8, 65536, integer=True)
    _number(params, "batch_size", 1, 4096, integer=True)
    _number(params, "eval_fraction", 0.0, 0.5)
    _number(params, "r", 1, MAX_RANK, integer=True)
    _number(params, "lora_alpha", 0.0, 1e6, lo_open=True)
    targets = params.get("target_modules")
    if targets is not None and (
        not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets)
    ):
        raise InvalidJob("params.target_modules must be a non-empty list of module names")
    if params.get("continue_from") is not None:
        if not isinstance(params["continue_from"], str):
            raise InvalidJob("params.continue_from must be an adapter ref")
        parent = _resolve_inputs(session, principal, [JobInput(ref=params["continue_from"])])[0]
        if parent["base_model"] != base:
            raise InvalidJob(
                f"params.continue_from {parent['ref']} targets base model "
                f"'{parent['base_model']}', not '{base}'"
            )
        params["continue_from"] = parent["ref"]


def default_queue(job_type: str, params: dict[str, Any]) -> str:
    """``gpu`` for work that is dense in the model size, ``cpu`` for low-rank work.

    Train, merge and the element-wise combine methods (ties, dare, magnitude
    prune: they build each module's dense delta) gain from a GPU; the low-rank
    methods and compress take seconds on a CPU. Workers consume both queues by
    default, and a job on ``gpu`` runs on the CPU of a worker that has no GPU.
    """
    if job_type in ("train", "merge"):
        return "gpu"
    if job_type == "combine" and params.get("method") in DENSITY_METHODS:
        return "gpu"
    return "cpu"


def submit_job(session: Session, principal: Principal, req: JobRequest) -> Job:
    """Validate a job request and insert the job row (status ``queued``)."""
    namespace = catalog.checked_name(req.namespace or principal.default_namespace, "namespace")
    ns = catalog.get_namespace(session, namespace)
    if ns is None:
        if not principal.can(namespace, "write"):
            raise NotFound(f"namespace '{namespace}' not found")
    else:
        require_scope(principal, ns.name, ns.private, "write")
    params = dict(req.params)
    if req.type == "merge":
        catalog.checked_base_model_name(req.output)
        require_scope(principal, "*", False, "write")
    else:
        try:
            validate_adapter_name(req.output)
        except InvalidRefError as exc:
            raise InvalidName(f"output: {exc}") from None
    resolved: list[dict[str, Any]] = []
    if req.type == "train":
        if req.inputs:
            raise InvalidJob(
                "a train job takes no inputs: use params.dataset and params.continue_from"
            )
        _check_train(session, principal, params)
    else:
        resolved = _resolve_inputs(session, principal, req.inputs)
        base = _same_base(resolved)
        if req.type == "combine":
            _check_combine(params, resolved)
        elif req.type == "compress":
            _check_compress(params, resolved)
        else:
            _only(params, set(), "merge")
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
        detail={"type": req.type, "output": req.output},
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
    *,
    status: str | None = None,
    job_type: str | None = None,
    namespace: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Jobs visible to the caller, newest first, with optional filters."""
    query = select(Job).order_by(Job.created_at.desc())
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.type == job_type)
    if namespace:
        query = query.where(Job.namespace == namespace)
    private = session.exec(select(Namespace.name).where(Namespace.private)).all()
    hidden = [name for name in private if not principal.can(name, "read")]
    if hidden:
        query = query.where(Job.namespace.not_in(hidden))
    return [job_view(job) for job in session.exec(query.limit(max(1, min(limit, 500)))).all()]


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
    job_state.cancel_queued(session, job_id)
    job_state.request_cancel(session, job_id)
    session.refresh(job)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise Conflict(f"job '{job_id}' already {job.status}")
    audit.record(session, principal, "job.cancel", namespace=job.namespace, target=job.id)
    session.flush()
    return job
