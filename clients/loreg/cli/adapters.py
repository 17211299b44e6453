"""``loreg ls``, ``loreg show`` and ``loreg lineage``: what the registry holds."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit, size, table
from loreg.vocabulary import LineageNodeKind

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
    show.add_argument(
        "--modules", action="store_true", help="also list the card's figures of every module"
    )


def setup_lineage(lineage: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg lineage REF [--base-model]``."""
    lineage.set_defaults(handler=_cmd_lineage)
    lineage.add_argument("ref", metavar="REF", help="a version ref, or a base model name")
    lineage.add_argument("--base-model", action="store_true", help="REF names a base model")


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
        versions = adapter.get("versions") if isinstance(adapter, dict) else None
        if isinstance(versions, list) and versions:
            out.write("versions:\n")
            for v in versions:
                card = f"  card {v['card_status']}" if v.get("card_status") else ""
                out.write(
                    f"  v{v.get('version')}  {v.get('digest')}  {size(v.get('size'))}  "
                    f"{v.get('created_at') or ''}{card}\n"
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
    info = registry.lineage(args.ref, base_model=args.base_model)

    def label(node: dict[str, Any]) -> str:
        if node.get("private"):
            return "(a private version)"
        kind = "base model " if node.get("kind") == LineageNodeKind.BASE_MODEL else ""
        return f"{kind}{node.get('ref')}"

    def human(out: TextIO) -> None:
        out.write(f"{label(info['root'])}\n")
        if not info["edges"]:
            out.write("  (no recorded parents)\n")
        for edge in info["edges"]:
            params = ", ".join(f"{k}={v}" for k, v in sorted((edge.get("params") or {}).items()))
            out.write(
                f"  {label(edge['child'])} <-{edge['relation']}- {label(edge['parent'])}"
                + (f"  [{params}]" if params else "")
                + "\n"
            )
        if info.get("truncated"):
            out.write("  ... (truncated)\n")

    return emit(args, info, human)
