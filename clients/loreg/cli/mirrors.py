"""``loreg mirror import|export|add|ls|rm|sync``: adapters copied to and from an upstream Hub.

``loreg mirror import hf://some-org/some-lora@main --as acme/some-lora`` submits a
``mirror_import`` job on the server (the upstream is the server's
``LOREG_HUB_URL``); ``loreg mirror add hf://org/repo --as ns/name --every 6h``
records a mirror the server syncs on its own; ``loreg mirror export acme/medical-v3
--to hf://acme/medical`` publishes a version upstream (a ``mirror_export`` job);
``loreg mirror sync [ID]`` submits sync jobs now (one mirror, or every due one).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from loreg.cli.jobs import _finish
from loreg.cli.output import emit, table
from loreg.mirrors import format_interval

if TYPE_CHECKING:
    from loreg.client import Registry


def _upstream_args(cmd: Any) -> None:
    cmd.add_argument("upstream", metavar="hf://ORG/REPO[@REVISION]", help="upstream model repo")
    cmd.add_argument(
        "--as",
        dest="target",
        required=True,
        metavar="[NS/]NAME",
        help="the adapter that gets the mirrored versions",
    )
    cmd.add_argument("--revision", help="branch, tag or commit upstream (default: main branch)")


def setup_mirror(mirror: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg mirror``: import, export, add, ls, rm, sync."""
    sub = mirror.add_subparsers(dest="mirror_command", metavar="COMMAND", required=True)
    imp = add(sub, "import", _cmd_import, "import an upstream repo once (a mirror_import job)")
    _upstream_args(imp)
    imp.add_argument("--wait", action="store_true", help="wait until the job finishes")
    imp.add_argument("--timeout", type=float, help="seconds to wait at most (with --wait)")
    imp.add_argument("--poll", type=float, default=1.0, help="seconds between checks")
    exp = add(sub, "export", _cmd_export, "publish a version to an upstream repo (one commit)")
    exp.add_argument("ref", metavar="REF", help="the version to export, e.g. acme/medical-v3")
    exp.add_argument(
        "--to", dest="upstream", required=True, metavar="hf://ORG/REPO", help="upstream repo"
    )
    exp.add_argument(
        "--private", action="store_true", default=None, help="create the upstream repo private"
    )
    exp.add_argument("--wait", action="store_true", help="wait until the job finishes")
    exp.add_argument("--timeout", type=float, help="seconds to wait at most (with --wait)")
    exp.add_argument("--poll", type=float, default=1.0, help="seconds between checks")
    add_cmd = add(sub, "add", _cmd_add, "keep an adapter in sync with an upstream repo")
    _upstream_args(add_cmd)
    add_cmd.add_argument(
        "--every", metavar="INTERVAL", help="sync on a schedule: 30m, 6h, 1d ... (default: never)"
    )
    ls = add(sub, "ls", _cmd_ls, "list mirrors and their last sync")
    ls.add_argument("--namespace")
    rm = add(sub, "rm", _cmd_rm, "stop mirroring (versions already mirrored stay)")
    rm.add_argument("id", type=int, metavar="ID", help="mirror id (loreg mirror ls)")
    sync = add(sub, "sync", _cmd_sync, "submit sync jobs: one mirror, or every due one")
    sync.add_argument("id", type=int, nargs="?", metavar="ID", help="mirror id (default: all due)")


def _cmd_import(args: argparse.Namespace, registry: Registry) -> int:
    job = registry.mirror_import(args.upstream, args.target, revision=args.revision)
    if args.wait:
        return _finish(args, registry.wait_job(job["id"], timeout=args.timeout, poll=args.poll))

    def human(out: TextIO) -> None:
        out.write(f"submitted job {job['id']} (mirror_import into {job.get('namespace')}/")
        out.write(f"{job.get('output')}, {job.get('status')})\n")
        out.write(f"  follow it: loreg job wait {job['id']}\n")

    return emit(args, job, human)


def _cmd_export(args: argparse.Namespace, registry: Registry) -> int:
    job = registry.mirror_export(args.ref, args.upstream, private=args.private)
    if args.wait:
        return _finish(args, registry.wait_job(job["id"], timeout=args.timeout, poll=args.poll))

    def human(out: TextIO) -> None:
        out.write(f"submitted job {job['id']} (mirror_export of {args.ref} to {args.upstream})\n")
        out.write(f"  follow it: loreg job wait {job['id']}\n")

    return emit(args, job, human)


def _describe(m: Mapping[str, Any], out: TextIO) -> None:
    out.write(f"mirror {m.get('id')}: {m.get('upstream')} -> {m.get('namespace')}/{m.get('name')}")
    out.write(f"  every {format_interval(m.get('interval_s'))}\n")


def _cmd_add(args: argparse.Namespace, registry: Registry) -> int:
    mirror = registry.add_mirror(
        args.upstream, args.target, revision=args.revision, every=args.every
    )
    return emit(args, mirror, lambda out: _describe(mirror, out))


def _cmd_ls(args: argparse.Namespace, registry: Registry) -> int:
    mirrors = registry.mirrors(namespace=args.namespace)

    def human(out: TextIO) -> None:
        if not mirrors:
            out.write("no mirrors\n")
            return
        rows = [
            [
                m.get("id"),
                m.get("upstream"),
                f"{m.get('namespace')}/{m.get('name')}",
                format_interval(m.get("interval_s")),
                m.get("last_status"),
                (m.get("last_commit") or "")[:12] or None,
                m.get("last_synced_at"),
            ]
            for m in mirrors
        ]
        table(out, ["ID", "UPSTREAM", "TARGET", "EVERY", "LAST", "COMMIT", "SYNCED"], rows)

    return emit(args, mirrors, human)


def _cmd_rm(args: argparse.Namespace, registry: Registry) -> int:
    mirror = registry.remove_mirror(args.id)
    return emit(args, mirror, lambda out: out.write(f"removed mirror {mirror.get('id')}\n"))


def _cmd_sync(args: argparse.Namespace, registry: Registry) -> int:
    answers = registry.sync_mirrors(args.id)

    def human(out: TextIO) -> None:
        if not answers:
            out.write("no mirror is due\n")
        for a in answers:
            m, job = a.get("mirror") or {}, a.get("job") or {}
            verb = "submitted" if a.get("submitted") else "still running"
            out.write(f"mirror {m.get('id')} ({m.get('upstream')}): {verb} job {job.get('id')}\n")

    return emit(args, answers, human)
