"""``loreg dataset push``: chat JSONL files that train jobs read."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit, size

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_dataset(dataset: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg dataset``: push FILE --name NAME."""
    dataset_cmds = dataset.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    dataset_push = add(
        dataset_cmds, "push", _cmd_dataset_push, "publish a chat JSONL file (or folder)"
    )
    dataset_push.add_argument("source", metavar="FILE", help="a .jsonl file or a folder of them")
    dataset_push.add_argument("--name", required=True, help="dataset name, e.g. support-chats")
    dataset_push.add_argument("--namespace", help="namespace (default: the token's default)")
    dataset_push.add_argument("--description", help="one-line description")


def _cmd_dataset_push(args: argparse.Namespace, registry: Registry) -> int:
    result = registry.push_dataset(
        args.source, args.name, namespace=args.namespace, description=args.description
    )

    def human(out: TextIO) -> None:
        verb = "pushed dataset" if result.created else "unchanged: dataset"
        out.write(f"{verb} {result.ref} ({result.digest})\n")
        out.write(
            f"  sent {len(result.uploaded)} file(s) ({size(result.bytes_uploaded)}), "
            f"reused {len(result.reused)}\n"
        )

    return emit(args, result.to_dict(), human)
