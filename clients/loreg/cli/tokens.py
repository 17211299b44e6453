"""``loreg token create|ls|revoke`` and ``loreg whoami``: API tokens and what they may do."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit, table
from loreg.vocabulary import Scope

if TYPE_CHECKING:
    from loreg.client import Registry


def parse_grant(text: str) -> dict[str, str]:
    """``NAMESPACE:SCOPE`` (``--grant``) -> ``{"namespace", "scope"}``; a usage error otherwise."""
    namespace, _, scope = text.rpartition(":")
    if not namespace or scope not in tuple(Scope):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAMESPACE:SCOPE with SCOPE one of {', '.join(Scope)} "
            "(e.g. acme:write, '*:admin')"
        )
    return {"namespace": namespace, "scope": scope}


def setup_token(token: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg token``: create NAME --grant NS:SCOPE [--expires 30d], ls,
    revoke ID."""
    token_cmds = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = add(token_cmds, "create", _cmd_token_create, "create a token (needs admin)")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--grant",
        action="append",
        type=parse_grant,
        required=True,
        metavar="NS:SCOPE",
        help="namespace and scope (read, write, admin); '*' means all; repeatable",
    )
    create.add_argument("--default-namespace", metavar="NS")
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help="lifetime: 12h, 30d, 2w, 1y ... (default: never expires)",
    )
    ls = add(token_cmds, "ls", _cmd_token_ls, "list tokens (admins: all; others: their own)")
    ls.add_argument("--limit", type=positive_int, default=50, help="most tokens to show")
    revoke = add(token_cmds, "revoke", _cmd_token_revoke, "revoke a token at once")
    revoke.add_argument("token_id", type=positive_int, metavar="ID", help="the id `token ls` shows")


def positive_int(text: str) -> int:
    """An argument that must be a whole number >= 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def page_size(limit: int) -> int:
    """The page size to ask for when at most ``limit`` rows are shown (the API's cap: 200)."""
    return min(limit, 200)


def setup_whoami(whoami: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """``loreg whoami`` (no arguments of its own)."""
    whoami.set_defaults(handler=_cmd_whoami)


def _cmd_token_create(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.create_token(
        args.name, args.grant, args.default_namespace, expires=args.expires
    )
    if not getattr(args, "json", False):
        print(
            f"token {args.name!r} created; it is shown only once: store it now "
            "(export LOREG_TOKEN=...)",
            file=sys.stderr,
        )
    return emit(args, answer, lambda out: out.write(f"{answer.get('token')}\n"))


def _cmd_whoami(args: argparse.Namespace, registry: Registry) -> int:
    me = registry.whoami()

    def human(out: TextIO) -> None:
        who = me.get("token_name") if me.get("authenticated") else "anonymous"
        out.write(f"{who} @ {registry.url}\n")
        out.write(f"  default namespace: {me.get('default_namespace')}\n")
        for g in me.get("grants") or []:
            out.write(f"  {g.get('namespace')}: {g.get('scope')}\n")

    return emit(args, me, human)


def _state(token: dict[str, Any]) -> str:
    if token.get("revoked_at"):
        return "revoked"
    return "active" if token.get("active") else "expired"


def _cmd_token_ls(args: argparse.Namespace, registry: Registry) -> int:
    found = list(itertools.islice(registry.tokens(page_size=page_size(args.limit)), args.limit))

    def human(out: TextIO) -> None:
        rows = [
            (
                t.get("id"),
                t.get("name"),
                t.get("prefix"),
                ",".join(f"{g['namespace']}:{g['scope']}" for g in t.get("grants") or []),
                _state(t),
                t.get("expires_at"),
                t.get("created_at"),
            )
            for t in found
        ]
        header = ("ID", "NAME", "PREFIX", "GRANTS", "STATE", "EXPIRES", "CREATED")
        table(out, header, rows)

    return emit(args, found, human)


def _cmd_token_revoke(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.revoke_token(args.token_id)
    said = f"token {answer.get('id')} ({answer.get('name')}) revoked at {answer.get('revoked_at')}"
    return emit(args, answer, lambda out: out.write(said + "\n"))
