"""Server-side commands: ``loreg serve``, ``db upgrade|admin-token``, ``fsck``, ``worker``.

They run the server or worker code in this process, so they need the ``server``
(or ``worker``) extra. The client package never imports ``registry`` or
``workers`` by statement (a test checks it): these commands name what they need,
by string, through :func:`_import_server`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loreg.cli.output import emit
from loreg.errors import ConfigError, IntegrityError, LoregError


def setup_serve(serve: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg serve``."""
    serve.set_defaults(handler=_cmd_serve, local=True)
    serve.add_argument("--data-dir", help="folder for the embedded SQLite database and blobs")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--header-timeout",
        type=float,
        help="seconds a client may take to send a request's headers (LOREG_HEADER_TIMEOUT)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=int,
        help="seconds an idle keep-alive connection stays open (LOREG_KEEPALIVE_TIMEOUT)",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        help="most connections at once; idle ones are closed first (LOREG_LIMIT_CONCURRENCY)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="serving processes (LOREG_WORKERS; default: one per CPU core with a broker, "
        "LOREG_REDIS_URL, else 1; embedded mode takes only 1)",
    )


def setup_db(db: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Subcommands of ``loreg db``: upgrade, admin-token."""
    db_cmds = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = add(db_cmds, "upgrade", _cmd_db_upgrade, "apply database migrations", local=True)
    upgrade.add_argument("--data-dir", help="embedded data folder (SQLite)")
    token = add(
        db_cmds,
        "admin-token",
        _cmd_db_admin_token,
        "create a token with admin on '*' in the database (when no admin token works)",
        local=True,
    )
    token.add_argument("--data-dir", help="embedded data folder (SQLite)")
    token.add_argument("--name", default="admin-recovery", help="the new token's name")


def setup_fsck(fsck: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg fsck``."""
    fsck.set_defaults(handler=_cmd_fsck, local=True)
    fsck.add_argument("--data-dir", help="embedded data folder (default: the LOREG_* settings)")
    fsck.add_argument("--verify-hashes", action="store_true", help="also re-hash every blob")


def setup_worker(worker: argparse.ArgumentParser, add: Callable[..., Any]) -> None:
    """Arguments of ``loreg worker``."""
    worker.set_defaults(handler=_cmd_worker, local=True)
    worker.add_argument("--queues", default="gpu,cpu", help="queues to consume (default gpu,cpu)")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1)")
    worker.add_argument("--loglevel", default="INFO", help="Celery log level (default INFO)")
    worker.add_argument(
        "--reconcile-interval",
        metavar="SECONDS",
        help="seconds between reconciler passes (default: from the job delays; 0 disables)",
    )
    worker.add_argument(
        "--beat",
        action="store_true",
        help="also run Celery beat (the scheduled gc, LOREG_GC_INTERVAL_S); run exactly one",
    )


def _cmd_serve(args: argparse.Namespace, _registry: None) -> int:
    serve = _import_server("registry.serve", "serve")
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    with _config_errors():
        serve(
            data_dir=data_dir,
            host=args.host,
            port=args.port,
            json_output=getattr(args, "json", False),
            header_timeout=args.header_timeout,
            keepalive_timeout=args.keepalive_timeout,
            limit_concurrency=args.limit_concurrency,
            workers=args.workers,
        )
    return 0


def _cmd_db_upgrade(args: argparse.Namespace, _registry: None) -> int:
    upgrade = _import_server("registry.migrate", "upgrade")
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    with _config_errors():
        result = upgrade(data_dir=data_dir)
    data = {"status": "up to date"}
    if isinstance(result, str):
        data["database_url"] = re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", result)
    return emit(args, data, lambda out: out.write("database is up to date\n"))


def _cmd_db_admin_token(args: argparse.Namespace, _registry: None) -> int:
    make = _import_server("registry.services.tokens", "admin_token_from_env")
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    with _config_errors():
        made = make(data_dir, args.name)
    return emit(
        args,
        made,
        lambda out: out.write(
            f"{made['token']}\n"
            f"token {made['id']} ({made['name']}) has admin on '*'; it is shown only now\n"
        ),
    )


def _cmd_fsck(args: argparse.Namespace, _registry: None) -> int:
    run = _import_server("registry.services.fsck", "run_from_env")
    text = _import_server("registry.services.fsck", "format_report")
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    with _config_errors():
        report = run(data_dir, verify_hashes=args.verify_hashes)
    emit(args, report, lambda out: out.write(text(report)))
    return 0 if report["ok"] else IntegrityError.exit_code


def _cmd_worker(args: argparse.Namespace, _registry: None) -> int:
    worker_main = _import_server("workers.main", "main", extra="worker")
    argv = ["--queues", args.queues, "--concurrency", str(args.concurrency)]
    argv += ["--loglevel", args.loglevel]
    if args.beat:
        argv.append("--beat")
    if args.reconcile_interval is not None:
        argv += ["--reconcile-interval", args.reconcile_interval]
    if getattr(args, "json", False):
        argv.append("--json")
    with _config_errors():
        return worker_main(argv)


@contextlib.contextmanager
def _config_errors() -> Iterator[None]:
    """Turn the server's ConfigError (a bad ``LOREG_*`` variable) into a one-line error."""
    try:
        config_error = _import_server("registry.settings", "ConfigError")
    except LoregError:  # no server installed: the import error is reported elsewhere
        yield
        return
    try:
        yield
    except config_error as exc:
        raise ConfigError(f"configuration: {exc}") from exc


def _import_server(module: str, attribute: str, *, extra: str = "server") -> Any:
    """``module.attribute`` of the server or worker code: the CLI's one way to reach it.

    The client package never imports ``registry`` or ``workers`` by statement (a test
    checks it); its server commands name what they need here, by string.
    """
    import importlib

    try:
        return getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        what = "worker" if extra == "worker" else "registry server"
        raise LoregError(
            f"the {what} is not installed ({exc}): pip install 'loreg[{extra}]'"
        ) from exc
