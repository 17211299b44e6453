"""``loreg token create`` and ``loreg whoami``: API tokens and what they may do."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit
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
    """Subcommands of ``loreg token``: create NAME --grant NS:SCOPE."""
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


def setup_whoami(whoami: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """``loreg whoami`` (no arguments of its own)."""
    whoami.set_defaults(handler=_cmd_whoami)


def _cmd_token_create(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.create_token(args.name, args.grant, args.default_namespace)
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
