"""Names of upstream Hub repos: ``hf://org/repo[@revision]``, shared by the SDK, CLI and API.

A mirror names its upstream as a Hugging Face model repo id (``org/repo``) and an
optional revision (a branch, tag or commit; the Hub's default branch when absent).
``hf://`` is only the written form; the API takes ``repo`` and ``revision`` apart.
Only model repos: ``hf://datasets/...`` and ``hf://spaces/...`` are refused.
Standard library only: the CLI imports this at start.
"""

from __future__ import annotations

import re

from loreg.errors import ValidationFailedError

SCHEME = "hf://"
#: Longest repo id (``org/name``) and revision accepted.
MAX_REPO_ID = 200
MAX_REVISION = 128
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9._:/+-]{1,128}")
_OTHER_KINDS = ("datasets", "spaces")


def validate_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a Hub model repo id (``org/name``), else ValidationFailedError."""
    if not isinstance(repo_id, str) or len(repo_id) > MAX_REPO_ID:
        raise ValidationFailedError(f"upstream repo {repo_id!r} is not org/name")
    first = repo_id.split("/", 1)[0]
    if first in _OTHER_KINDS and repo_id.count("/") == 2:
        raise ValidationFailedError(
            f"upstream repo {repo_id!r} is a {first[:-1]} repo: only model repos can be mirrored"
        )
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise ValidationFailedError(
            f"upstream repo {repo_id!r} is not a Hub model repo id: write org/name "
            "(letters, digits, '.', '_', '-'; e.g. hf://some-org/some-lora)"
        )
    return repo_id


def validate_revision(revision: str | None) -> str | None:
    """``revision`` (a branch, tag or commit) if it is acceptable, else ValidationFailedError."""
    if revision is None:
        return None
    if not _REVISION.fullmatch(revision) or ".." in revision or revision.startswith("/"):
        raise ValidationFailedError(
            f"upstream revision {revision!r} is not a branch, tag or commit name "
            f"(1..{MAX_REVISION} of letters, digits and . _ - / : +)"
        )
    return revision


def parse_upstream(text: str, revision: str | None = None) -> tuple[str, str | None]:
    """``hf://org/repo[@revision]`` (or bare ``org/repo``) -> ``(repo_id, revision)``.

    ``revision`` (``--revision``) is used when the text names none; naming two is an error.
    """
    body = text[len(SCHEME) :] if text.startswith(SCHEME) else text
    if "://" in body:
        raise ValidationFailedError(
            f"upstream {text!r} is not hf://org/repo[@revision] (only Hugging Face model repos)"
        )
    repo_id, sep, given = body.partition("@")
    if sep:
        if revision is not None and revision != given:
            raise ValidationFailedError(
                f"upstream {text!r} names revision {given!r} and --revision says {revision!r}: "
                "give one"
            )
        revision = given
    return validate_repo_id(repo_id), validate_revision(revision)


def format_upstream(repo_id: str, revision: str | None = None) -> str:
    """The written form ``hf://org/repo[@revision]``."""
    return f"{SCHEME}{repo_id}" + (f"@{revision}" if revision else "")
