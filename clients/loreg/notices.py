"""Warnings a resolve answer carries: a yanked version, a deprecated adapter.

The server sends each as one ``Warning`` header (RFC 9110's field, warn-code 299,
"miscellaneous persistent warning") with the agent ``loreg``:

    Warning: 299 loreg "yanked: default/medical-v3 was yanked: broken tokenizer"

The quoted text is a JSON string (``ensure_ascii``): quotes and backslashes are
escaped as an HTTP quoted-string needs, and any non-ASCII character of a user's
reason or message travels as ``\\uXXXX``, so the header stays ASCII. The text
starts with the kind (:class:`loreg.vocabulary.WarningKind`) and a colon.
Standard library only: the server formats, the SDK parses, with the same code.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from loreg.vocabulary import WarningKind

#: The header name (compared case-insensitively by HTTP).
HEADER = "Warning"
_CODE = "299"
_AGENT = "loreg"
_VALUE = re.compile(r'^299 loreg ("(?:[^"\\]|\\.)*")$')


class LoregWarning(UserWarning):
    """Base class of the warnings the registry sends with an answer."""


class YankedVersionWarning(LoregWarning):
    """The version pulled was yanked: ``latest`` skips it; pin another one."""


class DeprecatedAdapterWarning(LoregWarning):
    """The adapter is deprecated (its message may name a successor)."""


_CLASSES: dict[WarningKind, type[LoregWarning]] = {
    WarningKind.YANKED: YankedVersionWarning,
    WarningKind.DEPRECATED: DeprecatedAdapterWarning,
}


@dataclass(frozen=True)
class Notice:
    """One warning: its kind and the human-readable message."""

    kind: WarningKind
    message: str

    def text(self) -> str:
        """``<kind>: <message>``, the warn-text."""
        return f"{self.kind.value}: {self.message}"

    def header_value(self) -> str:
        """The ``Warning`` header value carrying this notice."""
        return f"{_CODE} {_AGENT} {json.dumps(self.text(), ensure_ascii=True)}"

    def to_dict(self) -> dict[str, str]:
        """``{"kind", "message"}`` (what the SDK adds to a resolve answer)."""
        return {"kind": self.kind.value, "message": self.message}


def parse_header(value: str) -> Notice | None:
    """The notice in one ``Warning`` header value, None if it is not loreg's."""
    match = _VALUE.match(value.strip())
    if match is None:
        return None
    try:
        text = json.loads(match.group(1))
    except ValueError:
        return None
    kind, sep, message = str(text).partition(": ")
    try:
        return Notice(WarningKind(kind), message) if sep else None
    except ValueError:  # a kind this client does not know
        return None


def parse_headers(values: Iterable[str]) -> list[Notice]:
    """Every loreg notice among ``Warning`` header values (others are ignored)."""
    return [n for n in (parse_header(v) for v in values) if n is not None]


def yanked(ref: str, reason: str | None) -> Notice:
    """The notice for pulling the yanked version ``ref``."""
    why = f": {reason}" if reason else ""
    return Notice(
        WarningKind.YANKED,
        f"{ref} was yanked{why}; a bare name (latest) no longer selects it, pin another version",
    )


def deprecated(adapter: str, message: str, successor: str | None) -> Notice:
    """The notice for a version of the deprecated adapter ``adapter``."""
    use = f" (use {successor} instead)" if successor else ""
    return Notice(WarningKind.DEPRECATED, f"{adapter} is deprecated: {message}{use}")


def emit(notices: Iterable[Notice], stacklevel: int = 3) -> None:
    """``warnings.warn`` each notice with its :class:`LoregWarning` subclass."""
    for notice in notices:
        warnings.warn(notice.message, _CLASSES[notice.kind], stacklevel=stacklevel)
