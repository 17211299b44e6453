"""How every ``loreg`` command prints: JSON or human text on stdout, one-line errors on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO


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


def print_error(message: str) -> None:
    """Write ``error: <message>`` on stderr (silently, if stderr is gone)."""
    try:
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
