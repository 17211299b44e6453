"""``loreg ls``, ``loreg show`` and ``loreg lineage``: what the registry holds."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg import lineage_text
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
from loreg.vocabulary import AdapterSort, LineageDirection, LineageFormat

#: Versions ``loreg show`` lists unless ``--limit`` says otherwise (the detail's page).
SHOWN_VERSIONS = 20

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_ls(ls: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg ls [NAMESPACE] [--sort name|updated] [--limit N]``."""
    ls.set_defaults(handler=_cmd_ls)
    ls.add_argument("namespace", nargs="?", metavar="NAMESPACE")
    ls.add_argument(
        "--sort",
        choices=list(AdapterSort),
        default=AdapterSort.NAME,
        help="name: by namespace (oldest first), then name (default); updated: newest first",
    )
    ls.add_argument(
        "--limit",
        type=row_limit,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"show at most N adapters (default {DEFAULT_ROWS}), fetched a page at a time",
    )


def setup_show(show: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg show REF [--limit N]``."""
    show.set_defaults(handler=_cmd_show)
    show.add_argument("ref", metavar="REF")
    show.add_argument(
        "--limit",
        type=row_limit,
        default=SHOWN_VERSIONS,
        metavar="N",
        help=f"list at most N of the adapter's versions, newest first (default {SHOWN_VERSIONS})",
    )
    show.add_argument(
        "--modules", action="store_true", help="also list the card's figures of every module"
    )


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
    listed = registry.list(args.namespace, sort=args.sort, page_size=page_size_for(args.limit))
    adapters, more = first_rows(listed, args.limit)
    if more:
        more_hint("adapters", args.limit)

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


def _shown_versions(
    registry: Registry, info: dict[str, Any], limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` versions of the adapter ``show`` describes, and whether more
    exist: the detail's first page when it holds enough, else the versions list."""
    adapter = info.get("adapter")
    recent = adapter.get("recent_versions") if isinstance(adapter, dict) else None
    if not isinstance(recent, dict):  # offline: no adapter detail
        return [], False
    items = recent.get("items") or []
    if len(items) > limit or not recent.get("next_cursor"):
        return items[:limit], len(items) > limit
    ref = f"{info['namespace']}/{info['name']}"
    return first_rows(registry.versions(ref, page_size=page_size_for(limit)), limit)


def _cmd_show(args: argparse.Namespace, registry: Registry) -> int:
    shown = registry.show(args.ref)
    versions, more = _shown_versions(registry, shown, args.limit)
    info = {**shown, "versions": versions}  # the versions listed, newest first
    if more:
        more_hint("versions", args.limit)

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
        if versions:
            out.write("versions (newest first):\n")
            for v in versions:
                yanked = v.get("yanked")
                mark = f"  card {v['card_status']}" if v.get("card_status") else ""
                if isinstance(yanked, dict):
                    mark += f"  yanked: {yanked.get('reason') or '(no reason given)'}"
                out.write(
                    f"  v{v.get('version')}  {v.get('digest')}  {size(v.get('size'))}  "
                    f"{v.get('created_at') or ''}{mark}\n"
                )
        write_card(out, info.get("card"), modules=bool(getattr(args, "modules", False)))

    return emit(args, info, human)


#: Card totals ``loreg show`` prints, in order.
_CARD_TOTALS = (
    "method",
    "parameter_count",
    "lora_parameter_count",
    "dtypes",
    "ranks",
    "alphas",
    "use_rslora",
    "storage",
    "module_count",
    "frobenius_norm",
    "effective_rank_mean",
    "energy_kept",
)


def write_card(out: TextIO, view: dict[str, Any] | None, *, modules: bool = False) -> None:
    """The ``card:`` block of ``loreg show``: status, totals, optionally one line per module."""
    if not view:
        return
    out.write(f"card: {view.get('card_status')}\n")
    if view.get("error"):
        out.write(f"  error: {view['error']}\n")
    card = view.get("card") or {}
    for key in _CARD_TOTALS:
        if card.get(key) is not None:
            value = card[key]
            shown = ", ".join(map(str, value)) if isinstance(value, list) else _number(value)
            out.write(f"  {key.replace('_', ' ')}: {shown}\n")
    if view.get("readme"):
        out.write(f"  readme: {len(view['readme'])} characters\n")
    if modules and card.get("modules"):
        rows = []
        for m in card["modules"]:
            energy = (m.get("energy_top_k") or {}).get("1")
            rows.append(
                [
                    m.get("name"),
                    m.get("rank"),
                    _number(m.get("alpha")),
                    _number(m.get("scaling")),
                    _number(m.get("frobenius_norm")),
                    _number(m.get("effective_rank")),
                    _number(energy) if energy is not None else None,
                ]
            )
        table(out, ["MODULE", "R", "ALPHA", "SCALING", "NORM", "EFF RANK", "TOP-1 ENERGY"], rows)


def _number(value: Any) -> str:
    """A float with 4 significant digits; anything else as is."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
