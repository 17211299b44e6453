"""``loreg preset save|ls|show|rm``: named LoRA training configs for train jobs.

``loreg preset save clinical --r 16 --alpha 32 --target-modules q_proj,v_proj`` saves a
preset in the token's default namespace (``--namespace`` for another); ``loreg job
train ... --param preset=clinical`` then copies its values into the job at submission.
The built-ins (small, medium, large, xlarge) are listed everywhere and read-only.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.output import emit, table
from loreg.cli.tokens import page_size, positive_int

if TYPE_CHECKING:
    from loreg.client import Registry

#: ``--flag`` of ``preset save`` -> ``(param, type, help)``.
_PARAM_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("--r", "r", int, "LoRA rank (required)"),
    ("--alpha", "lora_alpha", float, "LoRA alpha (required)"),
    ("--steps", "steps", int, "optimizer steps"),
    ("--epochs", "epochs", int, "passes over the training split"),
    ("--lr", "lr", float, "learning rate"),
    ("--seed", "seed", int, "seed of the split, shuffling and init"),
    ("--max-length", "max_length", int, "longest example, in tokens"),
    ("--batch-size", "batch_size", int, "examples per step"),
    ("--eval-fraction", "eval_fraction", float, "share of the dataset held out for eval"),
)


def _modules(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give module names, e.g. q_proj,v_proj")
    return names


def setup_preset(preset: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg preset``: save, ls, show, rm."""
    sub = preset.add_subparsers(dest="preset_command", metavar="COMMAND", required=True)
    save = add(sub, "save", _cmd_save, "create or replace a preset (write scope)")
    save.add_argument("name", metavar="NAME")
    for flag, dest, kind, help_text in _PARAM_FLAGS:
        save.add_argument(
            flag, dest=dest, type=kind, required=flag in ("--r", "--alpha"), help=help_text
        )
    save.add_argument(
        "--target-modules",
        dest="target_modules",
        type=_modules,
        metavar="A,B",
        help="module names to adapt, comma-separated",
    )
    save.add_argument("--description", help="what the preset is for")
    ls = add(sub, "ls", _cmd_ls, "list the built-in presets and the namespace's own")
    ls.add_argument("--limit", type=positive_int, default=50, help="most presets to show")
    show = add(sub, "show", _cmd_show, "show one preset's params")
    show.add_argument("name", metavar="NAME")
    rm = add(sub, "rm", _cmd_rm, "delete a namespace's preset (write scope)")
    rm.add_argument("name", metavar="NAME")
    for cmd in (save, ls, show, rm):
        cmd.add_argument("--namespace", metavar="NS", help="default: the token's namespace")


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(
        f"{key}={','.join(value) if isinstance(value, list) else value}"
        for key, value in params.items()
    )


def _cmd_save(args: argparse.Namespace, registry: Registry) -> int:
    params: dict[str, Any] = {dest: getattr(args, dest) for _, dest, _, _ in _PARAM_FLAGS}
    params["target_modules"] = args.target_modules
    saved = registry.save_preset(args.name, params, args.namespace, args.description)
    return emit(
        args,
        saved,
        lambda out: out.write(
            f"preset {saved['namespace']}/{saved['name']} saved: {_params_text(saved['params'])}\n"
        ),
    )


def _cmd_ls(args: argparse.Namespace, registry: Registry) -> int:
    found = list(
        itertools.islice(
            registry.presets(args.namespace, page_size=page_size(args.limit)), args.limit
        )
    )

    def human(out: TextIO) -> None:
        rows = [
            (
                p["name"],
                "built-in" if p.get("builtin") else p.get("namespace"),
                _params_text(p.get("params") or {}),
                p.get("description"),
            )
            for p in found
        ]
        table(out, ("NAME", "FROM", "PARAMS", "DESCRIPTION"), rows)

    return emit(args, found, human)


def _cmd_show(args: argparse.Namespace, registry: Registry) -> int:
    found = registry.preset(args.name, args.namespace)

    def human(out: TextIO) -> None:
        where = "built-in" if found.get("builtin") else f"namespace {found.get('namespace')}"
        out.write(f"{found['name']} ({where})\n")
        if found.get("description"):
            out.write(f"  {found['description']}\n")
        for key, value in (found.get("params") or {}).items():
            out.write(f"  {key}: {value}\n")
        if found.get("updated_at"):
            out.write(f"  updated {found['updated_at']} by {found.get('updated_by')}\n")

    return emit(args, found, human)


def _cmd_rm(args: argparse.Namespace, registry: Registry) -> int:
    removed = registry.delete_preset(args.name, args.namespace)
    return emit(
        args,
        removed,
        lambda out: out.write(f"preset {removed['namespace']}/{removed['name']} deleted\n"),
    )
