"""``loreg base push|pull|ls``: the base models adapters are checked against."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import (
    DEFAULT_ROWS,
    emit,
    first_rows,
    more_hint,
    page_size_for,
    row_limit,
    size,
    table,
)

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_base(base: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg base``: push, pull, ls."""
    base_cmds = base.add_subparsers(dest="base_command", metavar="COMMAND", required=True)
    base_push = add(base_cmds, "push", _cmd_base_push, "register a base model from a folder")
    base_push.add_argument("folder", metavar="DIR", help="folder with config.json + *.safetensors")
    base_push.add_argument("--name", required=True, help="e.g. tiny-llama or org/model")
    base_push.add_argument("--revision", help="revision label (e.g. a hub commit)")
    base_pull = add(base_cmds, "pull", _cmd_base_pull, "download a base model; print its folder")
    base_pull.add_argument("name", metavar="NAME")
    base_ls = add(base_cmds, "ls", _cmd_base_ls, "list registered base models")
    base_ls.add_argument(
        "--limit",
        type=row_limit,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"show at most N base models (default {DEFAULT_ROWS}), fetched a page at a time",
    )


def _cmd_base_push(args: argparse.Namespace, registry: Registry) -> int:
    info = registry.push_base_model(args.folder, args.name, revision=args.revision)

    def human(out: TextIO) -> None:
        verb = "registered" if info.get("created") else "unchanged:"
        revision = f"@{info['revision']}" if info.get("revision") else ""
        modules = info.get("modules")
        count = len(modules) if isinstance(modules, dict) else info.get("module_count")
        out.write(f"{verb} base model {info.get('name')}{revision} ({count} linear modules)\n")
        out.write(
            f"  sent {len(info['uploaded'])} file(s) ({size(info['bytes_uploaded'])}), "
            f"reused {len(info['reused'])}\n"
        )

    return emit(args, info, human)


def _cmd_base_pull(args: argparse.Namespace, registry: Registry) -> int:
    path = registry.pull_base_model(args.name)
    return emit(args, {"name": args.name, "path": str(path)}, lambda out: out.write(f"{path}\n"))


def _cmd_base_ls(args: argparse.Namespace, registry: Registry) -> int:
    listed = registry.list_base_models(page_size=page_size_for(args.limit))
    models, more = first_rows(listed, args.limit)
    if more:
        more_hint("base models", args.limit)

    def human(out: TextIO) -> None:
        if not models:
            out.write("no base models\n")
            return
        rows = [
            [
                m.get("name"),
                m.get("revision"),
                m.get("architecture"),
                m.get("module_count"),
                size(m.get("size")),
            ]
            for m in models
        ]
        table(out, ["NAME", "REVISION", "ARCHITECTURE", "MODULES", "SIZE"], rows)

    return emit(args, models, human)
