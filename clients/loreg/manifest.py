"""Canonical JSON and the manifest digest that identifies a version.

A version's digest is the sha256 of a canonical JSON document holding its
files (sorted ``[path, sha256, size]`` triples) and its canonicalised config,
so the same content always gets the same digest, whatever order the files were
listed in and whatever order PEFT wrote set-valued config fields in (PEFT keeps
``target_modules`` in a Python ``set`` and writes it in hash-seed-dependent
order). Standard library only: the client computes the same digest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

#: Config fields that PEFT stores as sets (``LoraConfig.__post_init__`` turns a
#: list into a ``set``), so their order carries no meaning.
SET_VALUED_FIELDS = ("target_modules", "exclude_modules")

#: Default read size of :func:`sha256_file`.
HASH_CHUNK_SIZE = 8 * 2**20


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as canonical JSON: sorted keys, no whitespace, UTF-8.

    Raises ``ValueError`` for NaN/Infinity (not JSON) and ``TypeError`` for
    values JSON cannot represent.
    """
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with set-valued fields sorted and de-duplicated."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a JSON object (dict), got {type(config).__name__}")
    out = copy.deepcopy(config)
    for key in SET_VALUED_FIELDS:
        value = out.get(key)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            out[key] = sorted(set(value))
    return out


def manifest_digest(files: Iterable[tuple[str, str, int]], config: dict[str, Any] | None) -> str:
    """``sha256:<hex>`` of the canonical manifest: sorted files plus canonical config.

    ``files`` holds ``(path, sha256 hex, size)``; their order does not matter.
    Raises ``ValueError`` when a path is listed twice or a size is negative.
    """
    rows: list[list[Any]] = []
    seen: set[str] = set()
    for path, sha, size in files:
        if path in seen:
            raise ValueError(f"file {path!r} is listed twice in the manifest")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"file {path!r} has an invalid size {size!r}")
        seen.add(path)
        rows.append([path, sha.lower(), size])
    rows.sort()
    document = {
        "config": canonical_config(config) if config is not None else None,
        "files": rows,
    }
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_size: int = HASH_CHUNK_SIZE) -> str:
    """The sha256 (hex) of a file, read in ``chunk_size`` pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
