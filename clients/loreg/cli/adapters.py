"""``loreg ls``, ``loreg show`` and ``loreg lineage``: what the registry holds."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg import lineage_text
from loreg.cli.output import emit, size, table
from loreg.vocabulary import LineageDirection, LineageFormat

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_ls(ls: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg ls [NAMESPACE]``."""
    ls.set_defaults(handler=_cmd_ls)
    ls.add_argument("namespace", nargs="?", metavar="NAMESPACE")


def setup_show(show: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg show REF``."""
    show.set_defaults(handler=_cmd_show)
    show.add_argument("ref", metavar="REF")


def setup_lineage(lineage: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg lineage REF [--base-model] [--direction] [--depth] [--format]``."""
    lineage.set_defaults(handler=_cmd_lineage)
    lineage.add_argument("ref", metavar="REF", help="a version ref, or a base model name")
    lineage.add_argument("--base-model", action="store_true", help="REF names a base model")
    lineage.add_argument(
        "--direction",
        choices=[d.value for d in LineageDirection],
        default=LineageDirection.UP.value,
        help="up: parents (default); down: what was derived from REF; both",
    )
    lineage.add_argument(
        "--depth", type=int, default=None, metavar="N", help="at most N edges from REF"
    )
    lineage.add_argument(
        "--format",
        dest="lineage_format",
        choices=[f.value for f in LineageFormat],
        default=LineageFormat.TREE.value,
        help="tree (default), mermaid, dot, svg (drawn by the server) or json",
    )


def _cmd_ls(args: argparse.Namespace, registry: Registry) -> int:
    adapters = registry.list(args.namespace)

    def human(out: TextIO) -> None:
        if not adapters:
            out.write("no adapters\n")
            return
        rows = []
        for a in adapters:
            aliases = ", ".join(f"{k}->v{v}" for k, v in sorted((a.get("aliases") or {}).items()))
            versions = a.get("versions")
            count = len(versions) if isinstance(versions, list) else versions
            latest = a.get("latest_version")
            rows.append(
                [
                    f"{a.get('namespace')}/{a.get('name')}",
                    f"v{latest}" if latest is not None else None,
                    count,
                    aliases or None,
                    a.get("base_model"),
                    a.get("updated_at"),
                ]
            )
        table(out, ["ADAPTER", "LATEST", "VERSIONS", "ALIASES", "BASE MODEL", "UPDATED"], rows)

    return emit(args, adapters, human)


def _cmd_show(args: argparse.Namespace, registry: Registry) -> int:
    info = registry.show(args.ref)

    def human(out: TextIO) -> None:
        out.write(f"{info.get('ref')}\n")
        for key in ("digest", "base_model", "description", "created_at", "created_by"):
            if info.get(key) not in (None, ""):
                out.write(f"  {key.replace('_', ' ')}: {info[key]}\n")
        if info.get("aliases"):
            out.write(f"  aliases: {', '.join(info['aliases'])}\n")
        if info.get("size") is not None:
            out.write(f"  size: {size(info['size'])}\n")
        summary = info.get("summary") or {}
        if summary:
            out.write("  summary: " + ", ".join(f"{k}={v}" for k, v in summary.items()) + "\n")
        out.write("files:\n")
        for f in info.get("files") or []:
            out.write(f"  {f['path']}  {size(f.get('size'))}  sha256:{f.get('sha256')}\n")
        if info.get("config") is not None:
            config = json.dumps(info["config"], sort_keys=True)
            out.write(f"config: {config}\n")
        lineage = info.get("lineage") or []
        if lineage:
            out.write("lineage:\n")
            for edge in lineage:
                parent = edge.get("parent") or {}
                out.write(f"  {edge.get('relation')} {parent.get('kind')} {parent.get('ref')}\n")
        adapter = info.get("adapter") or {}
        deprecation = adapter.get("deprecation") if isinstance(adapter, dict) else None
        if isinstance(deprecation, dict):
            out.write(f"deprecated: {deprecation.get('message')}\n")
            if deprecation.get("successor"):
                out.write(f"  successor: {deprecation['successor']}\n")
        versions = adapter.get("versions") if isinstance(adapter, dict) else None
        if isinstance(versions, list) and versions:
            out.write("versions:\n")
            for v in versions:
                yanked = v.get("yanked")
                mark = ""
                if isinstance(yanked, dict):
                    mark = f"  yanked: {yanked.get('reason') or '(no reason given)'}"
                out.write(
                    f"  v{v.get('version')}  {v.get('digest')}  {size(v.get('size'))}  "
                    f"{v.get('created_at') or ''}{mark}\n"
                )

    return emit(args, info, human)


def _cmd_lineage(args: argparse.Namespace, registry: Registry) -> int:
    fmt = LineageFormat(args.lineage_format)
    where = {"base_model": args.base_model, "direction": args.direction, "depth": args.depth}
    if fmt == LineageFormat.SVG:
        sys.stdout.write(registry.lineage_svg(args.ref, **where))
        sys.stdout.flush()
        return 0
    info = registry.lineage(args.ref, **where)
    if fmt == LineageFormat.JSON:
        args.json = True
    render = {
        LineageFormat.TREE: lineage_text.to_tree,
        LineageFormat.MERMAID: lineage_text.to_mermaid,
        LineageFormat.DOT: lineage_text.to_dot,
    }.get(fmt, lineage_text.to_tree)
    return emit(args, info, lambda out: out.write(render(info)))
