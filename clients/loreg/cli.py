"""The ``loreg`` command line.

Every command accepts ``--url``, ``--token`` and ``--json`` (machine-readable
output on stdout). Errors print one line, ``error: <message>``, on stderr and
exit with the error's code (usage errors 2, Ctrl-C 130); ``LOREG_DEBUG=1``
adds the traceback. Heavy modules (httpx, the server, PEFT) are imported only
by the commands that need them, so ``loreg --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from loreg import __version__
from loreg.constants import debug_mode
from loreg.errors import ConfigError, IntegrityError, LoregError
from loreg.jobs import add_job_commands

if TYPE_CHECKING:
    from loreg.client import Registry

RegistryFactory = Callable[[argparse.Namespace], "Registry"]
SCOPES = ("read", "write", "admin")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line: ``error: ...`` and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def _grant(text: str) -> dict[str, str]:
    namespace, _, scope = text.rpartition(":")
    if not namespace or scope not in SCOPES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAMESPACE:SCOPE with SCOPE one of {', '.join(SCOPES)} "
            "(e.g. acme:write, '*:admin')"
        )
    return {"namespace": namespace, "scope": scope}


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

    def add(sub: Any, name: str, handler: Callable[..., Any], help_text: str) -> Any:
        cmd = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(handler=handler)
        return cmd

    push = add(commands, "push", _cmd_push, "publish an adapter folder as a new version")
    push.add_argument("folder", metavar="DIR", help="folder written by save_pretrained")
    push.add_argument("--name", required=True, help="adapter name, e.g. medical")
    push.add_argument("--namespace", help="namespace (default: the token's default namespace)")
    push.add_argument("--base-model", help="base model the adapter targets, e.g. tiny-llama")
    push.add_argument("--description", help="one-line description")
    push.add_argument(
        "--parent",
        action="append",
        default=[],
        metavar="REF",
        help="parent version (lineage, relation continued_from); repeatable",
    )

    pull = add(commands, "pull", _cmd_pull, "download a version and print its local folder")
    pull.add_argument("ref", metavar="REF", help="e.g. medical, medical-v3, acme/medical@prod")

    ls = add(commands, "ls", _cmd_ls, "list adapters")
    ls.add_argument("namespace", nargs="?", metavar="NAMESPACE")

    show = add(commands, "show", _cmd_show, "show a version: files, config, digest, lineage")
    show.add_argument("ref", metavar="REF")

    lineage = add(
        commands, "lineage", _cmd_lineage, "show every step a version (or base model) came from"
    )
    lineage.add_argument("ref", metavar="REF", help="a version ref, or a base model name")
    lineage.add_argument("--base-model", action="store_true", help="REF names a base model")

    alias = add(
        commands, "alias", _cmd_alias, "set (REF ALIAS) or remove (--rm NAME ALIAS) an alias"
    )
    alias.add_argument(
        "target", metavar="REF", help="version to point at (with --rm: adapter name)"
    )
    alias.add_argument("alias", metavar="ALIAS", help="e.g. prod")
    alias.add_argument("--rm", action="store_true", help="remove ALIAS from adapter NAME")

    base = add(commands, "base", None, "base models: push, pull, ls")
    base_cmds = base.add_subparsers(dest="base_command", metavar="COMMAND", required=True)
    base_push = add(base_cmds, "push", _cmd_base_push, "register a base model from a folder")
    base_push.add_argument("folder", metavar="DIR", help="folder with config.json + *.safetensors")
    base_push.add_argument("--name", required=True, help="e.g. tiny-llama or org/model")
    base_push.add_argument("--revision", help="revision label (e.g. a hub commit)")
    base_pull = add(base_cmds, "pull", _cmd_base_pull, "download a base model; print its folder")
    base_pull.add_argument("name", metavar="NAME")
    add(base_cmds, "ls", _cmd_base_ls, "list registered base models")

    dataset = add(commands, "dataset", None, "datasets (chat JSONL) for train jobs")
    dataset_cmds = dataset.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    dataset_push = add(
        dataset_cmds, "push", _cmd_dataset_push, "publish a chat JSONL file (or folder)"
    )
    dataset_push.add_argument("source", metavar="FILE", help="a .jsonl file or a folder of them")
    dataset_push.add_argument("--name", required=True, help="dataset name, e.g. support-chats")
    dataset_push.add_argument("--namespace", help="namespace (default: the token's default)")
    dataset_push.add_argument("--description", help="one-line description")

    token = add(commands, "token", None, "API tokens")
    token_cmds = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = add(token_cmds, "create", _cmd_token_create, "create a token (needs admin)")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--grant",
        action="append",
        type=_grant,
        required=True,
        metavar="NS:SCOPE",
        help="namespace and scope (read, write, admin); '*' means all; repeatable",
    )
    create.add_argument("--default-namespace", metavar="NS")

    add(commands, "whoami", _cmd_whoami, "show who the token is and what it may do")

    serve = add(commands, "serve", _cmd_serve, "run the registry server")
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

    db = add(commands, "db", None, "database maintenance")
    db_cmds = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = add(db_cmds, "upgrade", _cmd_db_upgrade, "apply database migrations")
    upgrade.add_argument("--data-dir", help="embedded data folder (SQLite)")

    add(commands, "gc", _cmd_gc, "garbage-collect unreferenced blobs (needs admin)")

    fsck = add(commands, "fsck", _cmd_fsck, "check the store still holds every blob (server side)")
    fsck.add_argument("--data-dir", help="embedded data folder (default: the LOREG_* settings)")
    fsck.add_argument("--verify-hashes", action="store_true", help="also re-hash every blob")
    cache = add(commands, "cache", None, "the local cache of pulled files")
    cache_cmds = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    verify = add(
        cache_cmds,
        "verify",
        _cmd_cache_verify,
        "re-hash every cached file; drop corrupt ones (the next pull fetches them again)",
    )
    verify.add_argument(
        "--cache-dir", help="cache folder (default: $LOREG_CACHE_DIR or the user cache folder)"
    )

    worker = add(commands, "worker", _cmd_worker, "run a job worker (needs LOREG_REDIS_URL)")
    worker.add_argument("--queues", default="gpu,cpu", help="queues to consume (default gpu,cpu)")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1)")
    worker.add_argument("--loglevel", default="INFO", help="Celery log level (default INFO)")
    worker.add_argument(
        "--reconcile-interval",
        metavar="SECONDS",
        help="seconds between reconciler passes (default: from the job delays; 0 disables)",
    )
    add_job_commands(commands, add)
    return parser


# --------------------------------------------------------------------- output
def _emit(args: argparse.Namespace, data: Any, human: Callable[[TextIO], None]) -> int:
    out = sys.stdout
    if getattr(args, "json", False):
        json.dump(data, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
    else:
        human(out)
    out.flush()
    return 0


def _size(n: Any) -> str:
    from loreg.progress import format_bytes

    return format_bytes(n) if isinstance(n, int | float) else "-"


def _table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(header)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


# ------------------------------------------------------------------- commands
def _cmd_push(args: argparse.Namespace, registry: Registry) -> int:
    result = registry.push(
        args.folder,
        args.name,
        namespace=args.namespace,
        base_model=args.base_model,
        description=args.description,
        parents=args.parent or None,
    )

    def human(out: TextIO) -> None:
        if result.created:
            out.write(f"pushed {result.ref} ({result.digest})\n")
        else:
            out.write(f"unchanged: {result.ref} already holds this content ({result.digest})\n")
        out.write(
            f"  sent {len(result.uploaded)} file(s) ({_size(result.bytes_uploaded)}), "
            f"reused {len(result.reused)}\n"
        )

    return _emit(args, result.to_dict(), human)


def _cmd_pull(args: argparse.Namespace, registry: Registry) -> int:
    resolved, path = registry._pull(args.ref)
    data = {"ref": resolved["ref"], "digest": resolved["digest"], "path": str(path)}
    return _emit(args, data, lambda out: out.write(f"{path}\n"))


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
        _table(out, ["ADAPTER", "LATEST", "VERSIONS", "ALIASES", "BASE MODEL", "UPDATED"], rows)

    return _emit(args, adapters, human)


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
            out.write(f"  size: {_size(info['size'])}\n")
        summary = info.get("summary") or {}
        if summary:
            out.write("  summary: " + ", ".join(f"{k}={v}" for k, v in summary.items()) + "\n")
        out.write("files:\n")
        for f in info.get("files") or []:
            out.write(f"  {f['path']}  {_size(f.get('size'))}  sha256:{f.get('sha256')}\n")
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
                out.write(
                    f"  v{v.get('version')}  {v.get('digest')}  {_size(v.get('size'))}  "
                    f"{v.get('created_at') or ''}\n"
                )

    return _emit(args, info, human)


def _cmd_lineage(args: argparse.Namespace, registry: Registry) -> int:
    info = registry.lineage(args.ref, base_model=args.base_model)

    def label(node: dict[str, Any]) -> str:
        if node.get("private"):
            return "(a private version)"
        kind = "base model " if node.get("kind") == "base_model" else ""
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

    return _emit(args, info, human)


def _cmd_alias(args: argparse.Namespace, registry: Registry) -> int:
    if args.rm:
        answer = registry.remove_alias(args.target, args.alias)
        line = f"removed alias {args.alias} from {answer['namespace']}/{answer['name']}"
        if answer.get("previous") is not None:
            line += f" (was v{answer['previous']})"
    else:
        answer = registry.set_alias(args.target, args.alias)
        line = f"{answer['namespace']}/{answer['name']}@{args.alias} -> v{answer.get('version')}"
        if answer.get("previous") is not None:
            line += f" (was v{answer['previous']})"
    return _emit(args, answer, lambda out: out.write(line + "\n"))


def _cmd_dataset_push(args: argparse.Namespace, registry: Registry) -> int:
    result = registry.push_dataset(
        args.source, args.name, namespace=args.namespace, description=args.description
    )

    def human(out: TextIO) -> None:
        verb = "pushed dataset" if result.created else "unchanged: dataset"
        out.write(f"{verb} {result.ref} ({result.digest})\n")
        out.write(
            f"  sent {len(result.uploaded)} file(s) ({_size(result.bytes_uploaded)}), "
            f"reused {len(result.reused)}\n"
        )

    return _emit(args, result.to_dict(), human)


def _cmd_base_push(args: argparse.Namespace, registry: Registry) -> int:
    info = registry.push_base_model(args.folder, args.name, revision=args.revision)

    def human(out: TextIO) -> None:
        verb = "registered" if info.get("created") else "unchanged:"
        revision = f"@{info['revision']}" if info.get("revision") else ""
        modules = info.get("modules")
        count = len(modules) if isinstance(modules, dict) else info.get("module_count")
        out.write(f"{verb} base model {info.get('name')}{revision} ({count} linear modules)\n")
        out.write(
            f"  sent {len(info['uploaded'])} file(s) ({_size(info['bytes_uploaded'])}), "
            f"reused {len(info['reused'])}\n"
        )

    return _emit(args, info, human)


def _cmd_base_pull(args: argparse.Namespace, registry: Registry) -> int:
    path = registry.pull_base_model(args.name)
    return _emit(args, {"name": args.name, "path": str(path)}, lambda out: out.write(f"{path}\n"))


def _cmd_base_ls(args: argparse.Namespace, registry: Registry) -> int:
    models = registry.list_base_models()

    def human(out: TextIO) -> None:
        if not models:
            out.write("no base models\n")
            return
        rows = [
            [
                m.get("name"),
                m.get("revision"),
                m.get("architecture"),
                m.get("module_count"),
                _size(m.get("size")),
            ]
            for m in models
        ]
        _table(out, ["NAME", "REVISION", "ARCHITECTURE", "MODULES", "SIZE"], rows)

    return _emit(args, models, human)


def _cmd_token_create(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.create_token(args.name, args.grant, args.default_namespace)
    if not getattr(args, "json", False):
        print(
            f"token {args.name!r} created; it is shown only once: store it now "
            "(export LOREG_TOKEN=...)",
            file=sys.stderr,
        )
    return _emit(args, answer, lambda out: out.write(f"{answer.get('token')}\n"))


def _cmd_whoami(args: argparse.Namespace, registry: Registry) -> int:
    me = registry.whoami()

    def human(out: TextIO) -> None:
        who = me.get("token_name") if me.get("authenticated") else "anonymous"
        out.write(f"{who} @ {registry.url}\n")
        out.write(f"  default namespace: {me.get('default_namespace')}\n")
        for g in me.get("grants") or []:
            out.write(f"  {g.get('namespace')}: {g.get('scope')}\n")

    return _emit(args, me, human)


def _cmd_gc(args: argparse.Namespace, registry: Registry) -> int:
    answer = registry.gc()

    def human(out: TextIO) -> None:
        items = answer.items() if isinstance(answer, dict) else []
        out.write("gc done\n" + "".join(f"  {k}: {v}\n" for k, v in items))

    return _emit(args, answer, human)


def _cmd_cache_verify(args: argparse.Namespace, _registry: None) -> int:
    from loreg.cache import Cache
    from loreg.constants import default_cache_dir

    cache = Cache(Path(args.cache_dir) if args.cache_dir else default_cache_dir())
    report = cache.verify()

    def human(out: TextIO) -> None:
        out.write(f"checked {report.checked} blob(s) ({_size(report.bytes)}) in {cache.root}: ")
        if not report.corrupt:
            out.write("no corrupt blob\n")
            return
        out.write(f"{len(report.corrupt)} corrupt, dropped (pull again to fetch them):\n")
        for bad in report.corrupt:
            used = ", ".join(bad["used_by"]) or "no cached version"
            out.write(f"  sha256:{bad['sha256']}  {_size(bad['size'])}  used by {used}\n")

    _emit(args, {"cache_dir": str(cache.root), **report.to_dict()}, human)
    if report.corrupt:
        from loreg.errors import IntegrityError

        return IntegrityError.exit_code
    return 0


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
    return _emit(args, data, lambda out: out.write("database is up to date\n"))


def _cmd_fsck(args: argparse.Namespace, _registry: None) -> int:
    run = _import_server("registry.services.fsck", "run_from_env")
    text = _import_server("registry.services.fsck", "format_report")
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else None
    with _config_errors():
        report = run(data_dir, verify_hashes=args.verify_hashes)
    _emit(args, report, lambda out: out.write(text(report)))
    return 0 if report["ok"] else IntegrityError.exit_code


def _cmd_worker(args: argparse.Namespace, _registry: None) -> int:
    worker_main = _import_server("workers.main", "main", extra="worker")
    argv = ["--queues", args.queues, "--concurrency", str(args.concurrency)]
    argv += ["--loglevel", args.loglevel]
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


_LOCAL_COMMANDS = {_cmd_serve, _cmd_db_upgrade, _cmd_fsck, _cmd_worker, _cmd_cache_verify}


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


# ----------------------------------------------------------------------- main
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
        if args.handler not in _LOCAL_COMMANDS:
            registry = factory(args)
        return int(args.handler(args, registry) or 0)
    except KeyboardInterrupt:
        _print_error("interrupted")
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
    _print_error(prefix + message + suffix)


def _print_error(message: str) -> None:
    try:
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
