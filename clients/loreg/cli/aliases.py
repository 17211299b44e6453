"""``loreg alias``: point a name like ``prod`` at a version, or remove it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loreg.cli.output import emit

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_alias(alias: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg alias REF ALIAS`` and ``loreg alias --rm NAME ALIAS``."""
    alias.set_defaults(handler=_cmd_alias)
    alias.add_argument(
        "target", metavar="REF", help="version to point at (with --rm: adapter name)"
    )
    alias.add_argument("alias", metavar="ALIAS", help="e.g. prod")
    alias.add_argument("--rm", action="store_true", help="remove ALIAS from adapter NAME")


def _cmd_alias(args: argparse.Namespace, registry: Registry) -> int:
    if args.rm:
        answer = registry.remove_alias(args.target, args.alias)
        line = f"removed alias {args.alias} from {answer['namespace']}/{answer['name']}"
        if answer.get("previous") is not None:
            line += f" (was v{answer['previous']})"
    else:
        answer = registry.set_alias(args.target, args.alias)
        line = f"{answer['namespace']}/{answer['name']}@{args.alias} -> v{answer.get('version')}"
        if answer.get("previous") is not None:
            line += f" (was v{answer['previous']})"
    return emit(args, answer, lambda out: out.write(line + "\n"))
