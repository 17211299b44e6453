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

__all__ = [
    "PICKLE_SUFFIXES",
    "check_manifest_paths",
    "is_pickle_path",
    "refuse_pickle",
    "validate_file_path",
]

#: Unicode categories refused in paths: control, surrogate, format (e.g. bidi
#: overrides, zero-width characters that make two names look alike) and
#: line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024

#: Names Windows reserves for devices, with or without an extension (``nul.txt``).
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"0123456789", "\u00b9", "\u00b2", "\u00b3")}
)
#: Characters Windows refuses in a file name (':' and '\\' are refused earlier).
_WINDOWS_FORBIDDEN = frozenset('<>"|?*')


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
        problem = _segment_problem(segment)
        if problem is not None:
            return problem
    return None


def _segment_problem(segment: str) -> str | None:
    """Why one ``/``-separated part of a path cannot be a file or folder name everywhere."""
    if segment == "":
        return "has an empty segment ('//' or a trailing '/')"
    if segment in (".", ".."):
        return f"has a {segment!r} segment"
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        return f"has a segment longer than {MAX_SEGMENT_BYTES} bytes"
    compat = unicodedata.normalize("NFKC", segment)
    if compat in (".", "..") or any(ch in compat for ch in "/\\:"):
        return (
            f"has the segment {segment!r}, which reads as {compat!r} once Unicode-normalised "
            "(NFKC, as some file systems and tools do)"
        )
    forbidden = sorted(set(segment) & _WINDOWS_FORBIDDEN)
    if forbidden:
        return f"contains {forbidden[0]!r}, which Windows does not allow in file names"
    if segment[-1] in ". ":
        return f"has the segment {segment!r} ending in {segment[-1]!r} (Windows drops it)"
    stem = segment.split(".", 1)[0].rstrip(" ").upper()
    if stem in WINDOWS_RESERVED:
        return f"has the segment {segment!r}: {stem} is a reserved device name on Windows"
    return None


def validate_file_path(path: str) -> str:
    """Check a file path of a version and return it (already in normal form).

    Refuses, with :class:`InvalidPath`: empty, absolute, backslashes, ``:``,
    ``.``/``..``/empty segments, control or invisible characters, more than 255 bytes per
    segment or 1024 bytes in all; and what some system cannot create: a segment
    that NFKC turns into ``.``/``..`` or a separator (fullwidth dots), Windows'
    reserved device names (``CON``, ``nul.txt``, ``COM1``...), ``<>"|?*``, a
    segment ending in a dot or a space. An accepted path joined under any
    folder stays inside that folder.
    """
    problem = _path_problem(path)
    if problem is not None:
        raise InvalidPath(f"invalid file path {_clip(path)}: it {problem}")
    return path


def _fold(path: str) -> str:
    """The key under which case-insensitive, normalising file systems see a path."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", path).casefold())


def check_manifest_paths(paths: list[str]) -> None:
    """Refuse a set of (individually valid) paths that cannot all exist in one folder.

    Refused, with :class:`InvalidPath`: two paths that differ only in case or
    Unicode normalisation (NFC/NFD), which are one file on macOS and Windows,
    and a path that is also a folder of another (``x`` and ``x/y``).
    """
    seen: dict[str, str] = {}
    for path in paths:
        key = _fold(path)
        other = seen.setdefault(key, path)
        if other != path:
            raise InvalidPath(
                f"file paths {_clip(other)} and {_clip(path)} differ only in case or Unicode "
                "normalisation: they are the same file on macOS and Windows; rename one"
            )
    folders: dict[str, str] = {}
    for key, path in seen.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            folders.setdefault("/".join(parts[:i]), path)
    for key, path in seen.items():
        if key in folders:
            raise InvalidPath(
                f"{_clip(path)} is a file, but {_clip(folders[key])} needs a folder of that "
                "name; a version cannot hold both"
            )


def refuse_pickle(path: str) -> None:
    """Raise :class:`PickleRefused` when ``path`` names a pickle file."""
    if is_pickle_path(path):
        raise PickleRefused(
            f"file {_clip(path)} is a pickle format, which can run code when loaded; "
            "convert it to safetensors (e.g. save_pretrained(..., safe_serialization=True) "
            "or safetensors.torch.save_file) and upload that instead"
        )
