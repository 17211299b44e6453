"""Jobs from the SDK and the CLI: request bodies, ``--input``/``--param`` parsing, waiting.

``loreg job submit combine --input medical-v3:0.7 --input legal-v1:0.3 --method ties
--density 0.5 --rank 16 --output medical-legal`` becomes ``POST /v1/jobs`` with
``inputs=[{"ref": "default/medical-v3"...}]``; see :func:`parse_input` for the
``REF[:WEIGHT]`` rule and :func:`parse_param` for ``--param KEY=VALUE`` typing.
Standard library only (plus the ref parser): the CLI imports this at start.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from loreg.errors import InvalidRefError, LoregError, ValidationFailedError
from loreg.refs import parse_ref

if TYPE_CHECKING:
    from loreg.client import Registry

JOB_TYPES = ("combine", "compress", "merge", "train")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
_PARAM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class JobFailedError(LoregError):
    """A job the caller waited for ended ``failed`` or ``cancelled``."""

    exit_code = 9


class JobTimeoutError(LoregError):
    """A job did not finish within the time the caller was willing to wait."""

    exit_code = 10


# --------------------------------------------------------------------- parsing


def _is_ref(text: str) -> bool:
    try:
        parse_ref(text)
    except InvalidRefError:
        return False
    return True


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_input(text: str) -> dict[str, Any]:
    """``REF[:WEIGHT]`` -> ``{"ref", "weight"}`` (weight 1.0 when absent).

    ``:`` also spells a version (``medical:3`` is version 3 of ``medical``), so
    the part after the LAST ``:`` is a weight only when it is a finite number,
    what precedes it is a valid ref, and either the number has a ``.``
    (``medical-v3:0.7``, ``medical:3:1.0``) or the whole text is not a valid
    ref (``medical-v3:2``: weight 2). Otherwise the whole text is the ref:
    ``medical:3`` is version 3 with weight 1; write ``medical:3.0`` for
    ``medical`` (latest) with weight 3.
    """
    head, sep, tail = text.rpartition(":")
    weight = _finite_float(tail) if sep else None
    if weight is not None and _is_ref(head) and ("." in tail or not _is_ref(text)):
        return {"ref": head, "weight": weight}
    try:
        parse_ref(text)
    except InvalidRefError as exc:
        raise InvalidRefError(
            f"input {text!r} is not REF or REF:WEIGHT (e.g. medical-v3 or medical-v3:0.7): {exc}"
        ) from None
    return {"ref": text, "weight": 1.0}


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``; VALUE is read as JSON when it is valid JSON.

    So ``rank=16`` is an int, ``lr=1e-4`` a float, ``merge=true`` a bool,
    ``target_modules=["q_proj","v_proj"]`` a list and ``preset=small`` the
    string ``"small"``; quote a JSON string to keep digits text (``name="16"``).
    NaN and infinities are refused.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _PARAM_KEY.fullmatch(key):
        raise ValidationFailedError(
            f"--param {text!r} is not KEY=VALUE with KEY a parameter name (e.g. rank=16)"
        )
    try:
        value = json.loads(raw)
    except ValueError:
        return key, raw
    if not _all_finite(value):
        raise ValidationFailedError(
            f"--param {key}: {raw!r} is not a finite number; give a finite value"
        )
    return key, value


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    return True


def normalize_inputs(inputs: Iterable[Any]) -> list[dict[str, Any]]:
    """SDK inputs as ``[{"ref", "weight"}]``: refs, ``(ref, weight)`` pairs or mappings."""
    out = []
    for item in inputs:
        if isinstance(item, str):
            ref, weight = item, 1.0
        elif isinstance(item, Mapping):
            if "ref" not in item:
                raise ValidationFailedError(f"job input {item!r} lacks 'ref'")
            ref, weight = item["ref"], item.get("weight", 1.0)
        elif isinstance(item, tuple | list) and len(item) == 2:
            ref, weight = item
        else:
            raise ValidationFailedError(
                f"job input {item!r} must be a ref, a (ref, weight) pair or "
                "{'ref': ..., 'weight': ...}"
            )
        parse_ref(ref)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValidationFailedError(f"job input {ref}: weight must be a number")
        if not math.isfinite(weight):
            raise ValidationFailedError(f"job input {ref}: weight must be finite")
        out.append({"ref": ref, "weight": float(weight)})
    return out


def job_request(
    job_type: str,
    inputs: Iterable[Any],
    params: Mapping[str, Any] | None,
    output: str,
    namespace: str | None = None,
    queue: str | None = None,
) -> dict[str, Any]:
    """The body of ``POST /v1/jobs`` (checked on the client for the obvious mistakes)."""
    if job_type not in JOB_TYPES:
        raise ValidationFailedError(f"job type {job_type!r} is not one of {', '.join(JOB_TYPES)}")
    if not isinstance(output, str) or not output:
        raise ValidationFailedError("a job needs an output name (e.g. output='medical-legal')")
    body: dict[str, Any] = {
        "type": job_type,
        "inputs": normalize_inputs(inputs),
        "params": dict(params or {}),
        "output": output,
    }
    if namespace is not None:
        body["namespace"] = namespace
    if queue is not None:
        body["queue"] = queue
    return body


def wait_for_job(
    fetch: Callable[[], dict[str, Any]],
    *,
    timeout: float | None = None,
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Call ``fetch()`` every ``poll`` seconds until the job is terminal; return its view.

    Raises :class:`JobTimeoutError` after ``timeout`` seconds (None: no limit).
    """
    if poll <= 0:
        raise ValidationFailedError(f"poll must be positive, got {poll}")
    deadline = None if timeout is None else clock() + timeout
    while True:
        job = fetch()
        if job.get("status") in TERMINAL_STATUSES:
            return job
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                raise JobTimeoutError(
                    f"job {job.get('id')} is still {job.get('status')} after {timeout:g} s "
                    f"(progress {_percent(job.get('progress'))}); wait again with "
                    f"`loreg job wait {job.get('id')}` or cancel it with `loreg job cancel`"
                )
            sleep(min(poll, left))
        else:
            sleep(poll)


def _percent(progress: Any) -> str:
    return f"{100 * progress:.0f}%" if isinstance(progress, int | float) else "-"


# ------------------------------------------------------------------------ CLI


def add_job_commands(commands: Any, add: Callable[..., Any]) -> None:
    """Add ``loreg job submit|status|logs|wait|cancel|ls`` under ``commands``."""
    job = add(commands, "job", None, "jobs: combine, compress, merge, train on workers")
    sub = job.add_subparsers(dest="job_command", metavar="COMMAND", required=True)
    submit = add(sub, "submit", _cmd_submit, "submit a job (answers at once unless --wait)")
    submit.add_argument("type", choices=JOB_TYPES, metavar="TYPE", help=", ".join(JOB_TYPES))
    submit.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="REF[:WEIGHT]",
        help="input adapter and weight, e.g. medical-v3:0.7 (medical:3 is version 3; write "
        "medical:3.0 for weight 3); repeatable",
    )
    submit.add_argument("--method", help="combine method (linear, svd, ties, dare_ties, ...)")
    submit.add_argument("--density", type=float, help="density in (0, 1] (ties, dare, prune)")
    submit.add_argument("--rank", type=int, help="target rank")
    submit.add_argument("--seed", type=int, help="random seed (DARE, training)")
    submit.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other parameter; VALUE is JSON when it parses (16, 0.5, true, [..]), "
        "else text; repeatable",
    )
    submit.add_argument("--output", required=True, metavar="NAME", help="result name")
    submit.add_argument("--namespace", help="namespace of the result (default: the token's)")
    submit.add_argument("--queue", choices=("gpu", "cpu"), help="worker queue")
    submit.add_argument("--wait", action="store_true", help="wait until the job finishes")
    _wait_options(submit)
    for name, handler, text in (
        ("status", _cmd_status, "show a job: status, progress, error, result"),
        ("logs", _cmd_logs, "print the tail of a job's log"),
        ("wait", _cmd_wait, "wait until a job finishes; exit non-zero unless it succeeded"),
        ("cancel", _cmd_cancel, "cancel a queued job, or ask a running one to stop"),
    ):
        cmd = add(sub, name, handler, text)
        cmd.add_argument("id", metavar="ID", help="job id")
        if name == "wait":
            _wait_options(cmd)
    ls = add(sub, "ls", _cmd_ls, "list jobs, newest first")
    ls.add_argument("--status", choices=("queued", "running", *TERMINAL_STATUSES))
    ls.add_argument("--type", choices=JOB_TYPES)
    ls.add_argument("--namespace")
    ls.add_argument("--limit", type=int, default=50)


def _wait_options(cmd: Any) -> None:
    cmd.add_argument("--timeout", type=float, help="seconds to wait at most (default: no limit)")
    cmd.add_argument("--poll", type=float, default=1.0, help="seconds between checks")


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The job params of ``loreg job submit``: the named flags plus every ``--param``."""
    params: dict[str, Any] = {}
    for key in ("method", "density", "rank", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    for text in args.params:
        key, value = parse_param(text)
        if key in params:
            raise ValidationFailedError(
                f"parameter {key!r} is given twice (--{key} or --param {key}=...): keep one"
            )
        params[key] = value
    return params


def _emit(args: argparse.Namespace, data: Any, human: Callable[[TextIO], None]) -> int:
    from loreg.cli import _emit as emit

    return emit(args, data, human)


def _describe(job: Mapping[str, Any], out: TextIO) -> None:
    out.write(f"job {job.get('id')}  {job.get('type')}  {job.get('status')}")
    out.write(f"  {_percent(job.get('progress'))}\n")
    for inp in job.get("inputs") or []:
        out.write(f"  input: {inp.get('ref')} (weight {inp.get('weight')})\n")
    if job.get("params"):
        out.write(f"  params: {json.dumps(job['params'], sort_keys=True)}\n")
    out.write(f"  output: {job.get('output')}  attempts: {job.get('attempts')}\n")
    for key in ("message", "error"):
        if job.get(key):
            out.write(f"  {key}: {job[key]}\n")
    result = job.get("result") or {}
    if result.get("ref"):
        out.write(f"  result: {result['ref']} ({result.get('digest')})\n")


def _finish(args: argparse.Namespace, job: dict[str, Any]) -> int:
    """Print the final job; exit 0 if it succeeded, else the JobFailedError code."""
    _emit(args, job, lambda out: _describe(job, out))
    if job.get("status") == "succeeded":
        return 0
    reason = job.get("error") or job.get("message") or "no reason recorded"
    sys.stderr.write(f"error: job {job.get('id')} {job.get('status')}: {reason}\n")
    return JobFailedError.exit_code


def _cmd_submit(args: argparse.Namespace, registry: Registry) -> int:
    inputs = [parse_input(text) for text in args.inputs]
    job = registry.submit_job(
        args.type,
        inputs,
        params_from_args(args),
        args.output,
        namespace=args.namespace,
        queue=args.queue,
    )
    if args.wait:
        return _finish(args, registry.wait_job(job["id"], timeout=args.timeout, poll=args.poll))

    def human(out: TextIO) -> None:
        out.write(f"submitted job {job['id']} ({job.get('type')}, {job.get('status')})\n")
        out.write(f"  follow it: loreg job wait {job['id']}\n")

    return _emit(args, job, human)


def _cmd_status(args: argparse.Namespace, registry: Registry) -> int:
    job = registry.job(args.id)
    return _emit(args, job, lambda out: _describe(job, out))


def _cmd_logs(args: argparse.Namespace, registry: Registry) -> int:
    text = registry.job_logs(args.id)
    data = {"id": args.id, "log": text}
    return _emit(args, data, lambda out: out.write(text + ("\n" if text else "")))


def _cmd_wait(args: argparse.Namespace, registry: Registry) -> int:
    return _finish(args, registry.wait_job(args.id, timeout=args.timeout, poll=args.poll))


def _cmd_cancel(args: argparse.Namespace, registry: Registry) -> int:
    job = registry.cancel_job(args.id)

    def human(out: TextIO) -> None:
        if job.get("status") == "cancelled":
            out.write(f"cancelled job {job.get('id')}\n")
        else:
            out.write(f"asked job {job.get('id')} ({job.get('status')}) to stop\n")

    return _emit(args, job, human)


def _cmd_ls(args: argparse.Namespace, registry: Registry) -> int:
    from loreg.cli import _table

    jobs = registry.jobs(
        status=args.status, type=args.type, namespace=args.namespace, limit=args.limit
    )

    def human(out: TextIO) -> None:
        if not jobs:
            out.write("no jobs\n")
            return
        rows = [
            [
                j.get("id"),
                j.get("type"),
                j.get("status"),
                _percent(j.get("progress")),
                j.get("output"),
                (j.get("result") or {}).get("ref"),
                j.get("created_at"),
            ]
            for j in jobs
        ]
        _table(out, ["ID", "TYPE", "STATUS", "PROGRESS", "OUTPUT", "RESULT", "CREATED"], rows)

    return _emit(args, jobs, human)
