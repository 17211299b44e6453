"""``loreg audit``: who did what, when (admins), newest first, with filters."""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit, table
from loreg.cli.tokens import page_size, positive_int

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_audit(audit: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """``loreg audit [--actor A] [--action X] [--namespace NS] [--target T] [--since T]
    [--until T] [--limit N]``."""
    audit.set_defaults(handler=_cmd_audit)
    audit.add_argument("--actor", help="only rows by this token name (or job:<id>, mirror:<id>)")
    audit.add_argument("--action", help="only this action, e.g. alias.set, version.publish")
    audit.add_argument("--namespace", metavar="NS", help="only rows about this namespace")
    audit.add_argument("--target", help="only rows about this target, e.g. medical@prod")
    audit.add_argument("--since", metavar="TIME", help="from this time: ISO-8601, or 2h / 7d ago")
    audit.add_argument("--until", metavar="TIME", help="before this time: ISO-8601, or 1h ago")
    audit.add_argument("--limit", type=positive_int, default=50, help="most rows to show")


def _change(detail: dict[str, Any]) -> str:
    def short(value: Any) -> str:
        return "-" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))

    return f"{short(detail.get('before'))} -> {short(detail.get('after'))}"


def _cmd_audit(args: argparse.Namespace, registry: Registry) -> int:
    rows = registry.audit(
        actor=args.actor,
        action=args.action,
        namespace=args.namespace,
        target=args.target,
        since=args.since,
        until=args.until,
        page_size=page_size(args.limit),
    )
    found = list(itertools.islice(rows, args.limit))

    def human(out: TextIO) -> None:
        table(
            out,
            ("AT", "ACTOR", "ACTION", "NAMESPACE", "TARGET", "CHANGE"),
            [
                (
                    e.get("at"),
                    e.get("actor"),
                    e.get("action"),
                    e.get("namespace"),
                    e.get("target"),
                    _change(e.get("detail") or {}),
                )
                for e in found
            ],
        )

    return emit(args, found, human)
