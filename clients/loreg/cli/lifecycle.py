"""``loreg yank``, ``unyank``, ``deprecate`` and ``delete``: a version's or adapter's life."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loreg.cli.output import emit
from loreg.errors import ValidationFailedError

if TYPE_CHECKING:
    from loreg.client import Registry


def setup_yank(yank: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg yank REF [--reason TEXT]``."""
    yank.set_defaults(handler=_cmd_yank)
    yank.add_argument("ref", metavar="REF", help="the version: medical-v3, medical@prod, ...")
    yank.add_argument("--reason", help="why (shown to whoever still pulls it)")


def setup_unyank(unyank: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg unyank REF``."""
    unyank.set_defaults(handler=_cmd_unyank)
    unyank.add_argument("ref", metavar="REF", help="the version: medical-v3, ...")


def setup_deprecate(deprecate: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg deprecate NAME (--message TEXT [--successor REF] | --clear)``."""
    deprecate.set_defaults(handler=_cmd_deprecate)
    deprecate.add_argument("name", metavar="NAME", help="the adapter: [namespace/]name")
    deprecate.add_argument("--message", "-m", help="why, shown on every pull of its versions")
    deprecate.add_argument("--successor", metavar="REF", help="what to use instead")
    deprecate.add_argument("--clear", action="store_true", help="remove the deprecation")


def setup_delete(delete: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg delete REF`` and ``loreg delete NAME --adapter``."""
    delete.set_defaults(handler=_cmd_delete)
    delete.add_argument(
        "ref", metavar="REF", help="the version (medical-v3), or with --adapter the adapter name"
    )
    delete.add_argument(
        "--adapter", action="store_true", help="delete the whole adapter, every version"
    )


def _yank_line(answer: dict[str, Any]) -> str:
    latest = answer.get("latest_version")
    now = f"latest is now v{latest}" if latest is not None else "no version is left for latest"
    state = "yanked" if answer.get("yanked") else "unyanked"
    return f"{state} {answer['ref']} ({now})\n"


def _cmd_yank(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.yank(args.ref, args.reason)
    return emit(args, answer, lambda out: out.write(_yank_line(answer)))


def _cmd_unyank(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.unyank(args.ref)
    return emit(args, answer, lambda out: out.write(_yank_line(answer)))


def _cmd_deprecate(args: argparse.Namespace, registry: Registry) -> int:
    if args.clear:
        if args.message or args.successor:
            raise ValidationFailedError("--clear takes no --message or --successor")
        answer = registry.undeprecate(args.name)
        line = f"{answer['namespace']}/{answer['name']} is no longer deprecated\n"
    else:
        if not args.message:
            raise ValidationFailedError("say why with --message TEXT (or pass --clear)")
        answer = registry.deprecate(args.name, args.message, args.successor)
        successor = answer["deprecation"].get("successor")
        use = f" (successor: {successor})" if successor else ""
        line = f"{answer['namespace']}/{answer['name']} is deprecated{use}\n"
    return emit(args, answer, lambda out: out.write(line))


def _cmd_delete(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.delete_adapter(args.ref) if args.adapter else registry.delete(args.ref)

    def human(out: Any) -> None:
        for ref in answer["deleted_versions"]:
            out.write(f"deleted {ref}\n")
        if answer["adapter_deleted"]:
            out.write(f"deleted adapter {args.ref}\n")
        for alias in answer["deleted_aliases"]:
            out.write(f"  removed alias {alias}\n")
        out.write(
            f"  {answer['unreferenced_blobs']} blob(s) now unreferenced "
            "(gc removes them after the grace period)\n"
        )

    return emit(args, answer, human)
