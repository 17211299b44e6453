"""Build the ``loreg`` parser, run one command, and turn its outcome into an exit code.

Each command group lives in its own module and adds its subcommands through the
``add(subparsers, name, handler, help, local=False)`` function given here;
``local`` commands run without a :class:`~loreg.Registry` (server-side and cache
commands). Only those modules and the standard library load at start-up: the
SDK (httpx) is imported when a command first needs the registry.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from loreg._version import __version__
from loreg.cli import (
    adapters,
    admin,
    aliases,
    base_models,
    cache,
    datasets,
    jobs,
    server,
    tokens,
    transfer,
)
from loreg.cli.output import print_error
from loreg.constants import debug_mode
from loreg.errors import LoregError

if TYPE_CHECKING:
    from loreg.client import Registry

RegistryFactory = Callable[[argparse.Namespace], "Registry"]
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Every top-level command, in the order ``loreg --help`` lists them.
COMMANDS: tuple[Callable[[Any, Callable[..., Any]], None], ...] = (
    transfer.add_push,
    transfer.add_pull,
    adapters.add_ls,
    adapters.add_show,
    adapters.add_lineage,
    aliases.add_alias,
    base_models.add_base,
    datasets.add_dataset,
    tokens.add_token,
    tokens.add_whoami,
    server.add_serve,
    server.add_db,
    admin.add_gc,
    server.add_fsck,
    cache.add_cache,
    server.add_worker,
    jobs.add_job,
)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``error: ...`` and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``loreg`` (global options are accepted after any command too)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument(
        "--url", default=argparse.SUPPRESS, help="registry URL (default: $LOREG_URL)"
    )
    group.add_argument(
        "--token", default=argparse.SUPPRESS, help="API token (default: $LOREG_TOKEN)"
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON on stdout",
    )

    parser = _Parser(
        prog="loreg",
        description="Registry for LoRA adapters: push, pull, alias and load versioned adapters.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"loreg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        sub: Any,
        name: str,
        handler: Callable[..., Any] | None,
        help_text: str,
        *,
        local: bool = False,
    ) -> Any:
        cmd = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(handler=handler, local=local)
        return cmd

    for add_command in COMMANDS:
        add_command(commands, add)
    return parser


def _default_factory(args: argparse.Namespace) -> Registry:
    from loreg.client import Registry

    return Registry(url=getattr(args, "url", None), token=getattr(args, "token", None))


def main(
    argv: Sequence[str] | None = None, *, registry_factory: RegistryFactory | None = None
) -> int:
    """Run ``loreg`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    ``registry_factory`` builds the :class:`~loreg.Registry` from the parsed
    arguments (tests pass one backed by ``httpx.MockTransport``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    factory = registry_factory or _default_factory
    registry = None
    try:
        if not args.local:
            registry = factory(args)
        return int(args.handler(args, registry) or 0)
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except LoregError as exc:
        _report(exc)
        return exc.exit_code
    except BrokenPipeError:
        # stdout closed early (`loreg ls | head`): not an error worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # a bug: still one line, traceback with LOREG_DEBUG=1
        hint = "" if _debug() else " (a bug in loreg? LOREG_DEBUG=1 shows the traceback)"
        _report(exc, prefix=f"unexpected {type(exc).__name__}: ", suffix=hint)
        return 1
    finally:
        if registry is not None:
            registry.close()


def _debug() -> bool:
    try:
        return debug_mode()
    except LoregError:
        return False


def _report(exc: BaseException, prefix: str = "", suffix: str = "") -> None:
    if _debug():
        traceback.print_exception(exc, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    print_error(prefix + message + suffix)
