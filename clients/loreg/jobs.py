"""Jobs in the SDK: request bodies, ``REF[:WEIGHT]``/``KEY=VALUE`` parsing, waiting.

``registry.submit_job("combine", ["medical-v3", ("legal-v1", 0.3)], {"method": "ties"},
"medical-legal")`` sends the body :func:`job_request` builds to ``POST /v1/jobs``;
:func:`wait_for_job` polls a job until it is terminal. :func:`parse_input` (the
``REF[:WEIGHT]`` rule) and :func:`parse_param` (``KEY=VALUE`` typing) read the
text forms the ``loreg job submit`` command accepts. Standard library only (plus
the ref parser): the CLI imports this at start.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from loreg.errors import InvalidRefError, LoregError, ValidationFailedError
from loreg.refs import parse_ref
from loreg.vocabulary import TERMINAL_STATUSES, JobType

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
    if job_type not in tuple(JobType):
        raise ValidationFailedError(f"job type {job_type!r} is not one of {', '.join(JobType)}")
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
                    f"(progress {format_progress(job.get('progress'))}); wait again with "
                    f"`loreg job wait {job.get('id')}` or cancel it with `loreg job cancel`"
                )
            sleep(min(poll, left))
        else:
            sleep(poll)


def format_progress(progress: Any) -> str:
    """A job's ``progress`` (0..1) as a whole percentage, ``"-"`` when unknown."""
    return f"{100 * progress:.0f}%" if isinstance(progress, int | float) else "-"
