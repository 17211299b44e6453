"""Bounds on every JSON value the registry accepts and stores.

A value that Python's ``json`` reads can still break what comes after: nested
a few hundred levels deep it overflows pydantic's serializer (every later
resolve of the version answers 500) and ``RecursionError`` s in recursive code;
``1e400`` reads as ``inf``, which JSON cannot write back; a lone surrogate
(``"\\ud800"``) cannot be encoded as UTF-8; Postgres refuses a NUL character
in text and in ``jsonb``. :func:`json_problem` finds the first such problem
without recursion, :func:`loads_bounded` parses a JSON document and checks it,
and :func:`bounded_copy` renders an already stored value that breaks the rules
(read-side repair). Standard library only.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deepest nesting accepted in a stored JSON value (real configs nest 2-4 levels;
#: tokenizer.json about 8).
MAX_JSON_DEPTH = 64
#: What replaces a subtree nested deeper than the bound in :func:`bounded_copy`.
TOO_DEEP = "<removed: nested deeper than {depth} levels>"


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a surrogate code point that pairs with nothing (not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as text (a NUL or a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate {text[exc.start]!r} (not valid Unicode)"
    return None


def _child_path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    shown = key if isinstance(key, str) and text_problem(key) is None else repr(key)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{path}.{shown}" if path else shown


def json_problem(
    value: Any, path: str = "", *, max_depth: int = MAX_JSON_DEPTH, skip: tuple[type, ...] = ()
) -> str | None:
    """The first problem of a parsed JSON value as ``"<path>: <what>"``, or None.

    Problems: nesting deeper than ``max_depth``, a non-finite number, a string
    or key with a NUL or a lone surrogate, a value that is not JSON at all.
    ``path`` names the value itself (e.g. ``"metadata"``); values of a type in
    ``skip`` (already validated objects) are not looked into.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        label = where or "the value"
        if skip and isinstance(item, skip):
            continue
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return f"{label}: nested deeper than {max_depth} levels"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(item, dict):
                    if not isinstance(key, str):
                        return f"{label}: has a key {key!r:.60} that is not a string"
                    problem = text_problem(key)
                    if problem is not None:
                        return f"{_child_path(where, key)}: the key {problem}"
                stack.append((child, _child_path(where, key), depth + 1))
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"{label}: {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{label}: {item!r} is out of range (JSON numbers must be finite)"
        elif item is not None and not isinstance(item, bool | int):
            return f"{label}: {type(item).__name__} is not a JSON value"
    return None


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"the number {literal[:40]} is out of range (it overflows to infinity)")
    return number


def reject_constant(name: str) -> Any:
    """``json.loads`` ``parse_constant`` hook: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` ``object_pairs_hook``: a key given twice is an error, not last-wins."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:100]!r}")
        out[key] = value
    return out


def loads_bounded(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse strict JSON and check it with :func:`json_problem`.

    Strict: UTF-8 (no BOM), no duplicate keys, no NaN/Infinity, no number that
    overflows to infinity. Raises ``ValueError`` with a message saying where
    the problem is.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not valid UTF-8 (byte {exc.start})") from None
    else:
        text = raw
    try:
        value = json.loads(
            text,
            object_pairs_hook=object_without_duplicates,
            parse_constant=reject_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, huge numbers
        raise ValueError(f"not valid JSON: {exc}") from None
    problem = json_problem(value, max_depth=max_depth)
    if problem is not None:
        raise ValueError(problem)
    return value


def bounded_copy(value: Any, *, max_depth: int = MAX_JSON_DEPTH, _depth: int = 0) -> Any:
    """A copy of a stored JSON value that :func:`json_problem` accepts.

    Subtrees deeper than ``max_depth`` become a :data:`TOO_DEEP` string,
    non-finite numbers become null, NUL characters and lone surrogates become
    U+FFFD. Recursion stops at ``max_depth``, so any stored value can be copied.
    """
    if isinstance(value, dict | list):
        if _depth >= max_depth:
            return TOO_DEEP.format(depth=max_depth)
        if isinstance(value, list):
            return [bounded_copy(v, max_depth=max_depth, _depth=_depth + 1) for v in value]
        return {
            _clean_text(str(k)): bounded_copy(v, max_depth=max_depth, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean_text(text: str) -> str:
    if text_problem(text) is None:
        return text
    return (
        text.replace("\x00", "\ufffd")
        .encode("utf-8", "surrogatepass")
        .decode("utf-8", "replace")
        .replace("\x00", "\ufffd")
    )
