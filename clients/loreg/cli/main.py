"""Build the ``loreg`` parser, run one command, and turn its outcome into an exit code.

Each command lives in a command-group module (:mod:`loreg.cli.transfer`, ...)
as a ``setup_<command>(parser, add)`` function that adds its arguments, its
subcommands (through ``add(subparsers, name, handler, help, local=False)``) and
its handler; ``local`` commands run without a :class:`~loreg.Registry` (the
server-side and cache commands). :data:`COMMANDS` names them by string and a
module is imported only when its command is chosen, so ``loreg --help`` loads
none of them and ``loreg push`` loads one. The SDK (httpx) is imported when a
command first needs the registry.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from loreg._version import __version__
from loreg.cli.output import print_error
from loreg.constants import debug_mode
from loreg.errors import LoregError
from loreg.notices import LoregWarning

if TYPE_CHECKING:
    from loreg.client import Registry

RegistryFactory = Callable[[argparse.Namespace], "Registry"]
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Every top-level command, in the order ``loreg --help`` lists them:
#: ``(name, "module:setup function", help)``.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("push", "loreg.cli.transfer:setup_push", "publish an adapter folder as a new version"),
    ("pull", "loreg.cli.transfer:setup_pull", "download a version and print its local folder"),
    ("ls", "loreg.cli.adapters:setup_ls", "list adapters"),
    ("search", "loreg.cli.search:setup_search", "find adapters by words, tags, base model, rank"),
    (
        "show",
        "loreg.cli.adapters:setup_show",
        "show a version: files, config, digest, lineage",
    ),
    (
        "lineage",
        "loreg.cli.adapters:setup_lineage",
        "show every step a version (or base model) came from",
    ),
    (
        "alias",
        "loreg.cli.aliases:setup_alias",
        "set (REF ALIAS) or remove (--rm NAME ALIAS) an alias",
    ),
    ("base", "loreg.cli.base_models:setup_base", "base models: push, pull, ls"),
    ("dataset", "loreg.cli.datasets:setup_dataset", "datasets (chat JSONL) for train jobs"),
    ("token", "loreg.cli.tokens:setup_token", "API tokens: create, ls, revoke"),
    ("whoami", "loreg.cli.tokens:setup_whoami", "show who the token is and what it may do"),
    ("serve", "loreg.cli.server:setup_serve", "run the registry server"),
    ("db", "loreg.cli.server:setup_db", "database maintenance"),
    ("gc", "loreg.cli.admin:setup_gc", "garbage-collect unreferenced blobs (needs admin)"),
    ("admin", "loreg.cli.admin:setup_admin", "registry maintenance (needs admin): cards"),
    (
        "yank",
        "loreg.cli.lifecycle:setup_yank",
        "yank a version: latest skips it, exact refs still pull it",
    ),
    ("unyank", "loreg.cli.lifecycle:setup_unyank", "undo a yank"),
    (
        "deprecate",
        "loreg.cli.lifecycle:setup_deprecate",
        "mark an adapter deprecated (--clear: undo)",
    ),
    (
        "delete",
        "loreg.cli.lifecycle:setup_delete",
        "delete a version, or an adapter with --adapter (admin)",
    ),
    (
        "fsck",
        "loreg.cli.server:setup_fsck",
        "check the store still holds every blob (server side)",
    ),
    ("cache", "loreg.cli.cache:setup_cache", "the local cache of pulled files"),
    ("worker", "loreg.cli.server:setup_worker", "run a job worker (needs LOREG_REDIS_URL)"),
    ("job", "loreg.cli.jobs:setup_job", "jobs: combine, compress, merge, train on workers"),
    (
        "mirror",
        "loreg.cli.mirrors:setup_mirror",
        "mirror adapters from an upstream Hugging Face Hub: import, add, ls, rm, sync",
    ),
    ("audit", "loreg.cli.audit:setup_audit", "who did what, when: the audit log (needs admin)"),
    ("preset", "loreg.cli.presets:setup_preset", "training presets: save, ls, show, rm"),
)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``error: ...`` and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


class _LazyCommands(argparse._SubParsersAction):
    """Subcommands whose arguments are set up only once the command is chosen.

    ``setups[name]`` runs (once) just before ``name``'s parser reads the rest of
    the command line, so its usage errors and ``--help`` are the full ones.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setups: dict[str, Callable[[], None]] = {}

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setup = self.setups.pop(values[0], None) if values else None
        if setup is not None:
            setup()
        super().__call__(parser, namespace, values, option_string)


def _setup(target: str, cmd: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Import ``"module:function"`` (a command group module) and let it set up ``cmd``."""
    import importlib

    module, _, function = target.partition(":")
    getattr(importlib.import_module(module), function)(cmd, add)


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
    commands = cast(
        _LazyCommands,
        parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True, action=_LazyCommands
        ),
    )

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

    for name, target, help_text in COMMANDS:
        cmd = add(commands, name, None, help_text)
        commands.setups[name] = functools.partial(_setup, target, cmd, add)
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
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LoregWarning)
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
        _print_warnings(caught)
        if registry is not None:
            registry.close()


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    """The registry's warnings (a yanked version, a deprecated adapter) as ``warning: ...``
    lines on stderr; any other warning as Python shows it."""
    for w in caught:
        if issubclass(w.category, LoregWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


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
