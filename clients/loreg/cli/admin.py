"""``loreg gc`` and ``loreg admin ...``: registry maintenance an admin token asks for over HTTP."""

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


def setup_admin(admin: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg admin``: ``cards --backfill [--retry-failed] [--limit N]``."""
    admin_cmds = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    cards = add(admin_cmds, "cards", _cmd_admin_cards, "computed cards of versions")
    cards.add_argument(
        "--backfill",
        action="store_true",
        required=True,
        help="give every version without a card a card job (batches until none is left)",
    )
    cards.add_argument(
        "--retry-failed", action="store_true", help="also compute failed cards again"
    )
    cards.add_argument(
        "--limit", type=int, default=500, metavar="N", help="versions per batch (default 500)"
    )


def _cmd_admin_cards(args: argparse.Namespace, registry: Registry) -> int:
    submitted, remaining = 0, 0
    retry = bool(args.retry_failed)
    while True:
        answer = registry.backfill_cards(limit=args.limit, retry_failed=retry)
        submitted += int(answer.get("submitted", 0))
        remaining = int(answer.get("remaining", 0))
        # a failed card taken now is pending: the next batch would not take it again
        if answer.get("submitted", 0) == 0 or remaining == 0:
            break
    report = {"submitted": submitted, "remaining": remaining}

    def human(out: TextIO) -> None:
        out.write(f"card jobs submitted: {submitted}\nversions still without a card: {remaining}\n")

    return emit(args, report, human)


def _cmd_gc(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.gc()

    def human(out: TextIO) -> None:
        items = answer.items() if isinstance(answer, dict) else []
        out.write("gc done\n" + "".join(f"  {k}: {v}\n" for k, v in items))

    return emit(args, answer, human)
