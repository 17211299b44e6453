"""How every ``loreg`` command prints: JSON or human text on stdout, one-line errors on stderr."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

#: Rows a listing command shows unless ``--limit`` says otherwise.
DEFAULT_ROWS = 50
#: The largest page the registry serves (``limit`` of every list endpoint).
MAX_PAGE = 200


def emit(args: argparse.Namespace, data: Any, human: Callable[[TextIO], object]) -> int:
    """Print ``data`` as JSON (``--json``) or through ``human(stdout)``; returns exit code 0."""
    out = sys.stdout
    if getattr(args, "json", False):
        json.dump(data, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
    else:
        human(out)
    out.flush()
    return 0


def size(n: Any) -> str:
    """A byte count for people (``1.5 MiB``), ``"-"`` when it is not a number."""
    from loreg.progress import format_bytes

    return format_bytes(n) if isinstance(n, int | float) else "-"


def table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write ``rows`` under ``header`` in left-aligned columns (``None`` cells print ``-``)."""
    cells = [list(header)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def row_limit(text: str) -> int:
    """``--limit N`` of a listing command: a positive number of rows to show."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of rows, got {text!r}")
    return value


def page_size_for(limit: int) -> int:
    """The page size that shows ``limit`` rows and tells whether there are more
    (one request whenever ``limit`` < the largest page)."""
    return min(limit + 1, MAX_PAGE)


def first_rows(items: Iterable[Any], limit: int) -> tuple[list[Any], bool]:
    """The first ``limit`` items of a lazily paged list, and whether more exist."""
    rows = list(itertools.islice(items, limit + 1))
    return rows[:limit], len(rows) > limit


def more_hint(what: str, limit: int) -> None:
    """Tell (on stderr, so stdout stays a table or JSON) that ``--limit`` cut the list."""
    try:
        sys.stderr.write(
            f"(showing the first {limit} {what}; there are more: pass --limit {limit * 2} "
            "or larger to see them)\n"
        )
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def print_error(message: str) -> None:
    """Write ``error: <message>`` on stderr (silently, if stderr is gone)."""
    try:
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
