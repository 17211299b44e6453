"""``loreg push`` and ``loreg pull``: an adapter folder to a new version, and back."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit, size

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_push(push: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg push DIR --name NAME``."""
    push.set_defaults(handler=_cmd_push)
    push.add_argument("folder", metavar="DIR", help="folder written by save_pretrained")
    push.add_argument("--name", required=True, help="adapter name, e.g. medical")
    push.add_argument("--namespace", help="namespace (default: the token's default namespace)")
    push.add_argument("--base-model", help="base model the adapter targets, e.g. tiny-llama")
    push.add_argument("--description", help="one-line description")
    push.add_argument(
        "--parent",
        action="append",
        default=[],
        metavar="REF",
        help="parent version (lineage, relation continued_from); repeatable",
    )


def setup_pull(pull: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg pull REF``."""
    pull.set_defaults(handler=_cmd_pull)
    pull.add_argument("ref", metavar="REF", help="e.g. medical, medical-v3, acme/medical@prod")


def _cmd_push(args: argparse.Namespace, registry: Registry) -> int:
    result = registry.push(
        args.folder,
        args.name,
        namespace=args.namespace,
        base_model=args.base_model,
        description=args.description,
        parents=args.parent or None,
    )

    def human(out: TextIO) -> None:
        if result.created:
            out.write(f"pushed {result.ref} ({result.digest})\n")
        else:
            out.write(f"unchanged: {result.ref} already holds this content ({result.digest})\n")
        out.write(
            f"  sent {len(result.uploaded)} file(s) ({size(result.bytes_uploaded)}), "
            f"reused {len(result.reused)}\n"
        )

    return emit(args, result.to_dict(), human)


def _cmd_pull(args: argparse.Namespace, registry: Registry) -> int:
    resolved, path = registry._pull(args.ref)
    data = {"ref": resolved["ref"], "digest": resolved["digest"], "path": str(path)}
    if resolved.get("warnings"):  # also printed on stderr as "warning: ..."
        data["warnings"] = resolved["warnings"]
    return emit(args, data, lambda out: out.write(f"{path}\n"))
