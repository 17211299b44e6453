"""``loreg serve``: migrate, bootstrap, and run the API with uvicorn.

Connection limits (see :mod:`registry.connections`): ``LOREG_HEADER_TIMEOUT`` (seconds a
connection may take to send a complete request head, default 10),
``LOREG_KEEPALIVE_TIMEOUT`` (seconds an idle keep-alive connection stays open, default 5)
and ``LOREG_LIMIT_CONCURRENCY`` (connections plus requests at once, default 1000; at the
limit idle connections are closed first, then requests answer 503).

Processes: ``LOREG_WORKERS`` / ``--workers N`` (see :func:`worker_count`). With N > 1
this process stays the single leader (migrations, bootstrap, the listening socket,
any background thread) and :mod:`registry.processes` serves the socket with N
uvicorn child processes; with N == 1 it serves the socket itself.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from registry import migrate
from registry.services import cards, fsck, gc, mirrors, search_index
from registry.services.context import Context
from registry.services.reconciler import Reconciler
from registry.services.tokens import bootstrap
from registry.settings import ConfigError, Settings

if TYPE_CHECKING:
    import uvicorn


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket with TCP_NODELAY set.

    Accepted connections inherit TCP_NODELAY on Linux, which avoids the ~40 ms
    delayed-ACK stall on keep-alive requests (uvicorn issue #3149).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_job_locally(settings: Settings, job_id: str) -> str:
    """Embedded mode's job executor, run in the local pool's child process.

    This is the composition root's hand-over of the worker code to the API: the
    worker modules are imported here, in the child, never in the API process.
    """
    from workers.runner import run_job_in_process

    return run_job_in_process(settings, job_id)


def prepare(settings: Settings) -> tuple[Context, str | None]:
    """Create the data dir, run migrations, index adapters search has not seen yet
    (:func:`registry.services.search_index.backfill`), create the default namespace and
    first admin token.

    Returns the context (its embedded executor is :func:`run_job_locally`) and the
    new admin token (None if tokens already existed). The token is also written to
    ``<data_dir>/admin_token`` (mode 0600).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database_url)
    ctx = Context.from_settings(settings, create_bucket=True, run_job=run_job_locally)
    search_index.backfill(ctx.engine)
    with Session(ctx.engine) as session:
        token = bootstrap(session)
        session.commit()
    if token is not None:
        path = settings.data_dir / "admin_token"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    return ctx, token


def start_job_recovery(ctx: Context) -> Reconciler | None:
    """Embedded mode: run the reconciler in this process, as workers do in production.

    Jobs left ``queued`` or ``running`` by a previous ``loreg serve`` (stopped or
    killed mid-job) are re-sent to the local executor, so a restart loses no job.
    With a broker configured the workers reconcile, and this returns None.
    """
    if ctx.settings.redis_url:
        return None
    return Reconciler(ctx, ctx.dispatcher.enqueue).start()


def start_mirror_scheduler(ctx: Context) -> mirrors.MirrorScheduler | None:
    """Embedded mode: submit due mirror syncs from this process (workers do it otherwise)."""
    if ctx.settings.redis_url:
        return None
    return mirrors.start_periodic(ctx, ctx.dispatcher.enqueue)


def start_scheduled_gc(ctx: Context) -> gc.PeriodicGc | None:
    """Embedded mode: collect garbage every ``LOREG_GC_INTERVAL_S`` in this process (with a
    broker, Celery beat schedules it: ``loreg worker --beat``)."""
    if ctx.settings.redis_url:
        return None
    return gc.start_periodic(ctx)


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def default_workers(settings: Settings, cores: int | None = None) -> int:
    """Serving processes when none is asked for: one per core with a broker, else 1.

    Embedded mode (no ``LOREG_REDIS_URL``) runs jobs in an executor of the API
    process, so it serves with one process.
    """
    if not settings.redis_url:
        return 1
    return max(1, cpu_cores() if cores is None else cores)


def worker_count(settings: Settings, requested: int | None = None) -> int:
    """How many processes serve: ``requested`` (``--workers``), else LOREG_WORKERS, else
    :func:`default_workers`.

    Raises :class:`ConfigError` for fewer than one, or for more than one without a
    broker (embedded mode's job executor lives in the one API process).
    """
    if requested is not None and requested < 1:
        raise ConfigError(f"--workers must be at least 1, got {requested}")
    count = requested if requested is not None else settings.workers
    if count is None:
        return default_workers(settings)
    if count > 1 and not settings.redis_url:
        given = f"--workers {count}" if requested is not None else f"LOREG_WORKERS={count}"
        raise ConfigError(
            f"{given} needs production mode: without a broker (LOREG_REDIS_URL) jobs run "
            "in an executor inside the API process, so embedded mode serves with one "
            "process. Set LOREG_REDIS_URL (and run `loreg worker`) to serve with several "
            "processes, or use --workers 1"
        )
    return count


def config_options(settings: Settings, *, log_level: str = "warning") -> dict[str, Any]:
    """The uvicorn options of every serving process, but its app and ``http`` protocol."""
    return {
        "log_level": log_level,
        "access_log": False,
        "h11_max_incomplete_event_size": 64 * 1024,
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keepalive_timeout_s,
    }


def uvicorn_config(app: Any, settings: Settings, *, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn configuration ``loreg serve`` runs ``app`` with (limits from settings)."""
    import uvicorn

    from registry.connections import guarded_protocol

    return uvicorn.Config(
        app,
        http=guarded_protocol(settings.header_timeout_s),
        **config_options(settings, log_level=log_level),
    )


def announce(
    settings: Settings, sock: socket.socket, host: str, token: str | None, *, json_output: bool
) -> None:
    """Print where the registry serves (and a new admin token): two lines, or one JSON object."""
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}"
    token_file = settings.data_dir / "admin_token"
    if json_output:
        announcement = {
            "url": url,
            "database": settings.database_kind,
            "storage": settings.storage_kind,
            "data_dir": str(settings.data_dir),
            "admin_token": token,
            "admin_token_file": str(token_file) if token is not None else None,
        }
        print(json.dumps(announcement, sort_keys=True), flush=True)
    else:
        print(
            f"loreg {settings.database_kind} + {settings.storage_kind} store, "
            f"data in {settings.data_dir}; serving on {url}",
            flush=True,
        )
        if token is not None:
            print(f"admin token (shown once, also in {token_file}): {token}", flush=True)


def serve(
    data_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    log_level: str = "warning",
    json_output: bool = False,
    header_timeout: float | None = None,
    keepalive_timeout: int | None = None,
    limit_concurrency: int | None = None,
    workers: int | None = None,
) -> None:
    """Run the registry until interrupted (embedded default, or Postgres/S3 from the env).

    It announces where it serves (and, on first start, the admin token) on
    stdout: two text lines, or with ``json_output`` one JSON object. The connection
    limits default to their LOREG_* settings; the keyword arguments override them.
    ``workers`` (default: LOREG_WORKERS, else :func:`default_workers`) is the number
    of serving processes; above one, this process supervises them and serves nothing.
    """
    import uvicorn

    from registry.app import create_app

    settings = Settings.from_env(data_dir)
    limits = {
        "header_timeout_s": header_timeout,
        "keepalive_timeout_s": keepalive_timeout,
        "limit_concurrency": limit_concurrency,
    }
    limits = {name: value for name, value in limits.items() if value is not None}
    if limits:
        settings = settings.with_overrides(**limits)
    count = worker_count(settings, workers)
    ctx, token = prepare(settings)
    sock = listening_socket(host, port)
    announce(settings, sock, host, token, json_output=json_output)
    if count == 1:
        app = create_app(context=ctx)
        server = uvicorn.Server(uvicorn_config(app, settings, log_level=log_level))
        run = functools.partial(server.run, sockets=[sock])
    else:
        from registry.processes import supervise

        ctx.engine.dispose()  # the children have their own engines; leader threads reconnect
        run = functools.partial(supervise, settings, sock, count, log_level=log_level)
    # the single leader: these run here, never in a child process (none with a broker)
    recovery = start_job_recovery(ctx)
    scrubber = fsck.start_periodic(ctx) if not settings.redis_url else None  # else: workers
    scheduler = start_mirror_scheduler(ctx)
    collector = start_scheduled_gc(ctx)
    backfill = cards.Backfill(ctx, ctx.dispatcher.enqueue).start()  # versions without a card
    try:
        run()
    finally:
        backfill.stop()
        if collector is not None:
            collector.stop()
        if scheduler is not None:
            scheduler.stop()
        if scrubber is not None:
            scrubber.stop()
        if recovery is not None:
            recovery.stop()
        sock.close()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - thin wrapper
    """``python -m registry.serve [DATA_DIR] [PORT]``."""
    args = argv if argv is not None else sys.argv[1:]
    serve(args[0] if args else None, port=int(args[1]) if len(args) > 1 else 8080)


if __name__ == "__main__":  # pragma: no cover
    main()
