"""Mirrors in the SDK: the ``--as`` target, ``--every`` intervals, and request bodies.

``registry.mirror_import("hf://some-org/some-lora@main", "acme/some-lora")`` submits
a ``mirror_import`` job (:func:`import_job_request`); ``registry.add_mirror(...,
every="6h")`` records a mirror the server syncs on its own (:func:`mirror_request`).
Standard library only (plus the ref and upstream name rules): the CLI imports this.
"""

from __future__ import annotations

import re
from typing import Any

from loreg.errors import InvalidRefError, ValidationFailedError
from loreg.hub_refs import parse_upstream
from loreg.refs import parse_ref
from loreg.vocabulary import JobType

_INTERVAL = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Longest interval accepted (the server's bound): 366 days.
MAX_INTERVAL_S = 366 * 86400


def parse_target(text: str) -> tuple[str | None, str]:
    """``[namespace/]name`` (``--as``) -> ``(namespace or None, name)``; no version part."""
    try:
        ref = parse_ref(text)
    except InvalidRefError as exc:
        raise ValidationFailedError(f"--as {text!r}: {exc}") from None
    if ref.version is not None or ref.alias is not None or ref.digest is not None:
        raise ValidationFailedError(
            f"--as {text!r} names a version: give the adapter only ([namespace/]name); "
            "a mirror adds the next version itself"
        )
    return ref.namespace, ref.name


def parse_interval(value: str | int | float) -> int:
    """``6h``, ``30m``, ``1d``, ``2w``, ``90s`` or a number of seconds -> seconds (>= 1)."""
    if isinstance(value, bool):
        raise ValidationFailedError(f"interval {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = int(value)
    else:
        match = _INTERVAL.fullmatch(value.strip().lower())
        if match is None:
            raise ValidationFailedError(
                f"interval {value!r} is not a duration: write e.g. 90s, 30m, 6h, 1d or 2w"
            )
        seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not 1 <= seconds <= MAX_INTERVAL_S:
        raise ValidationFailedError(
            f"interval {value!r} is out of range: between 1 second and 366 days"
        )
    return seconds


def import_job_request(upstream: str, target: str, revision: str | None = None) -> dict[str, Any]:
    """The ``POST /v1/jobs`` body of a ``mirror_import`` of ``upstream`` into ``target``."""
    repo, revision = parse_upstream(upstream, revision)
    namespace, name = parse_target(target)
    params: dict[str, Any] = {"repo": repo}
    if revision is not None:
        params["revision"] = revision
    body: dict[str, Any] = {
        "type": JobType.MIRROR_IMPORT.value,
        "inputs": [],
        "params": params,
        "output": name,
    }
    if namespace is not None:
        body["namespace"] = namespace
    return body


def export_job_request(ref: str, upstream: str, *, private: bool | None = None) -> dict[str, Any]:
    """The ``POST /v1/jobs`` body of a ``mirror_export`` of version ``ref`` to ``upstream``.

    ``upstream`` is ``hf://org/repo`` (no revision: an export commits to ``main``). The
    job's ``output`` is the exported adapter's name (nothing is published in loreg).
    """
    repo, revision = parse_upstream(upstream, None)
    if revision is not None:
        raise ValidationFailedError(
            f"export target {upstream!r}: drop '@{revision}' (an export commits to main)"
        )
    parsed = parse_ref(ref)
    params: dict[str, Any] = {"repo": repo}
    if private is not None:
        params["private"] = private
    body: dict[str, Any] = {
        "type": JobType.MIRROR_EXPORT.value,
        "inputs": [{"ref": ref}],
        "params": params,
        "output": parsed.name,
    }
    if parsed.namespace is not None:
        body["namespace"] = parsed.namespace
    return body


def mirror_request(
    upstream: str,
    target: str,
    *,
    revision: str | None = None,
    every: str | int | float | None = None,
) -> dict[str, Any]:
    """The ``POST /v1/mirrors`` body (``every`` None: synced only when asked)."""
    repo, revision = parse_upstream(upstream, revision)
    namespace, name = parse_target(target)
    body: dict[str, Any] = {"repo": repo, "revision": revision, "name": name}
    if namespace is not None:
        body["namespace"] = namespace
    if every is not None:
        body["interval_s"] = parse_interval(every)
    return body


def format_interval(seconds: int | None) -> str:
    """``6h``, ``90s``, ``1d``...: the shortest exact spelling; ``-`` for None."""
    if not seconds:
        return "-"
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"
