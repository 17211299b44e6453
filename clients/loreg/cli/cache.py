"""``loreg cache verify``: the local cache of pulled files (no registry needed)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from loreg.cli.output import emit, size


def setup_cache(cache: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg cache``: verify [--cache-dir DIR]."""
    cache_cmds = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    verify = add(
        cache_cmds,
        "verify",
        _cmd_cache_verify,
        "re-hash every cached file; drop corrupt ones (the next pull fetches them again)",
        local=True,
    )
    verify.add_argument(
        "--cache-dir", help="cache folder (default: $LOREG_CACHE_DIR or the user cache folder)"
    )


def _cmd_cache_verify(args: argparse.Namespace, _registry: None) -> int:
    from loreg.cache import Cache
    from loreg.constants import default_cache_dir

    cache = Cache(Path(args.cache_dir) if args.cache_dir else default_cache_dir())
    report = cache.verify()

    def human(out: TextIO) -> None:
        out.write(f"checked {report.checked} blob(s) ({size(report.bytes)}) in {cache.root}: ")
        if not report.corrupt:
            out.write("no corrupt blob\n")
            return
        out.write(f"{len(report.corrupt)} corrupt, dropped (pull again to fetch them):\n")
        for bad in report.corrupt:
            used = ", ".join(bad["used_by"]) or "no cached version"
            out.write(f"  sha256:{bad['sha256']}  {size(bad['size'])}  used by {used}\n")

    emit(args, {"cache_dir": str(cache.root), **report.to_dict()}, human)
    if report.corrupt:
        from loreg.errors import IntegrityError

        return IntegrityError.exit_code
    return 0
