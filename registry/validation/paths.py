"""File paths inside a version, and the refusal of pickle files.

A version's file path is joined under a cache or snapshot folder on every
client, so it must be a plain relative POSIX path that cannot climb out of
that folder or mean different things on different systems. Standard library
only.
"""

from __future__ import annotations

import unicodedata

from loreg.constants import PICKLE_SUFFIXES, is_pickle_path
from registry.errors import InvalidPath, PickleRefused

__all__ = ["PICKLE_SUFFIXES", "is_pickle_path", "refuse_pickle", "validate_file_path"]

#: Unicode categories refused in paths: control, surrogate, format (e.g. bidi
#: overrides, zero-width characters that make two names look alike) and
#: line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024


def _clip(path: str, limit: int = 120) -> str:
    text = repr(path)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path_problem(path: object) -> str | None:
    """Why ``path`` is not a safe relative POSIX path, or None."""
    if not isinstance(path, str):
        return f"must be a string, got {type(path).__name__}"
    if not path:
        return "is empty"
    for ch in path:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            return f"contains the control or invisible character {ch!r}"
    if "\\" in path:
        return "contains a backslash; use '/' between folders"
    if ":" in path:
        return "contains ':' (a drive or stream separator on Windows)"
    if path.startswith("/"):
        return "is absolute; give a path relative to the adapter folder"
    size = len(path.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        return f"is {size} bytes long; the limit is {MAX_PATH_BYTES}"
    for segment in path.split("/"):
        if segment == "":
            return "has an empty segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return f"has a {segment!r} segment"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"has a segment longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def validate_file_path(path: str) -> str:
    """Check a file path of a version and return it (already in normal form).

    Refuses, with :class:`InvalidPath`: empty, absolute, backslashes, ``:``,
    ``.``/``..``/empty segments, control or invisible characters, more than 255 bytes per
    segment or 1024 bytes in all. An accepted path joined under any folder
    stays inside that folder.
    """
    problem = _path_problem(path)
    if problem is not None:
        raise InvalidPath(f"invalid file path {_clip(path)}: it {problem}")
    return path


def refuse_pickle(path: str) -> None:
    """Raise :class:`PickleRefused` when ``path`` names a pickle file."""
    if is_pickle_path(path):
        raise PickleRefused(
            f"file {_clip(path)} is a pickle format, which can run code when loaded; "
            "convert it to safetensors (e.g. save_pretrained(..., safe_serialization=True) "
            "or safetensors.torch.save_file) and upload that instead"
        )
