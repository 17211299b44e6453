"""``loreg gc``: registry maintenance an admin token asks for over HTTP."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_gc(gc: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """``loreg gc`` (no arguments of its own)."""
    gc.set_defaults(handler=_cmd_gc)


def _cmd_gc(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.gc()

    def human(out: TextIO) -> None:
        items = answer.items() if isinstance(answer, dict) else []
        out.write("gc done\n" + "".join(f"  {k}: {v}\n" for k, v in items))

    return emit(args, answer, human)
