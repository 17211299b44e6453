"""``loreg job submit|status|logs|wait|cancel|ls``: jobs that run on the workers.

``loreg job submit combine --input medical-v3:0.7 --input legal-v1:0.3 --method ties
--density 0.5 --rank 16 --output medical-legal`` becomes ``POST /v1/jobs`` with
``inputs=[{"ref": "default/medical-v3"...}]``; see :func:`loreg.jobs.parse_input`
for the ``REF[:WEIGHT]`` rule and :func:`loreg.jobs.parse_param` for ``--param
KEY=VALUE`` typing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import (
    DEFAULT_ROWS,
    emit,
    first_rows,
    more_hint,
    page_size_for,
    print_error,
    row_limit,
    table,
)
from loreg.errors import ValidationFailedError
from loreg.jobs import JobFailedError, format_progress, parse_input, parse_param
from loreg.vocabulary import JobStatus, JobType, Queue

if TYPE_CHECKING:
    from loreg.client import Registry

#: The accepted words as plain strings (argparse quotes them in its usage errors).
_TYPES = [t.value for t in JobType]
_STATUSES = [s.value for s in JobStatus]
_QUEUES = [q.value for q in Queue]


def setup_job(job: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg job``: submit, status, logs, wait, cancel, ls."""
    sub = job.add_subparsers(dest="job_command", metavar="COMMAND", required=True)
    submit = add(sub, "submit", _cmd_submit, "submit a job (answers at once unless --wait)")
    submit.add_argument("type", choices=_TYPES, metavar="TYPE", help=", ".join(_TYPES))
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
    submit.add_argument("--queue", choices=_QUEUES, help="worker queue")
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
    ls.add_argument("--status", choices=_STATUSES)
    ls.add_argument("--type", choices=_TYPES)
    ls.add_argument("--namespace")
    ls.add_argument(
        "--limit",
        type=row_limit,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"show at most N jobs (default {DEFAULT_ROWS}), fetched a page at a time",
    )


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


def _describe(job: Mapping[str, Any], out: TextIO) -> None:
    out.write(f"job {job.get('id')}  {job.get('type')}  {job.get('status')}")
    out.write(f"  {format_progress(job.get('progress'))}\n")
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
    emit(args, job, lambda out: _describe(job, out))
    if job.get("status") == JobStatus.SUCCEEDED:
        return 0
    reason = job.get("error") or job.get("message") or "no reason recorded"
    print_error(f"job {job.get('id')} {job.get('status')}: {reason}")
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

    return emit(args, job, human)


def _cmd_status(args: argparse.Namespace, registry: Registry) -> int:
    job = registry.job(args.id)
    return emit(args, job, lambda out: _describe(job, out))


def _cmd_logs(args: argparse.Namespace, registry: Registry) -> int:
    text = registry.job_logs(args.id)
    data = {"id": args.id, "log": text}
    return emit(args, data, lambda out: out.write(text + ("\n" if text else "")))


def _cmd_wait(args: argparse.Namespace, registry: Registry) -> int:
    return _finish(args, registry.wait_job(args.id, timeout=args.timeout, poll=args.poll))


def _cmd_cancel(args: argparse.Namespace, registry: Registry) -> int:
    job = registry.cancel_job(args.id)

    def human(out: TextIO) -> None:
        if job.get("status") == JobStatus.CANCELLED:
            out.write(f"cancelled job {job.get('id')}\n")
        else:
            out.write(f"asked job {job.get('id')} ({job.get('status')}) to stop\n")

    return emit(args, job, human)


def _cmd_ls(args: argparse.Namespace, registry: Registry) -> int:
    listed = registry.jobs(
        status=args.status,
        type=args.type,
        namespace=args.namespace,
        page_size=page_size_for(args.limit),
    )
    jobs, more = first_rows(listed, args.limit)
    if more:
        more_hint("jobs", args.limit)

    def human(out: TextIO) -> None:
        if not jobs:
            out.write("no jobs\n")
            return
        rows = [
            [
                j.get("id"),
                j.get("type"),
                j.get("status"),
                format_progress(j.get("progress")),
                j.get("output"),
                (j.get("result") or {}).get("ref"),
                j.get("created_at"),
            ]
            for j in jobs
        ]
        table(out, ["ID", "TYPE", "STATUS", "PROGRESS", "OUTPUT", "RESULT", "CREATED"], rows)

    return emit(args, jobs, human)
