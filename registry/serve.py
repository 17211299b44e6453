"""``loreg serve``: migrate, bootstrap, and run the API with uvicorn.

Connection limits (see :mod:`registry.connections`): ``LOREG_HEADER_TIMEOUT`` (seconds a
connection may take to send a complete request head, default 10),
``LOREG_KEEPALIVE_TIMEOUT`` (seconds an idle keep-alive connection stays open, default 5)
and ``LOREG_LIMIT_CONCURRENCY`` (connections plus requests at once, default 1000; at the
limit idle connections are closed first, then requests answer 503).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from registry import migrate
from registry.services import fsck, mirrors
from registry.services.context import Context
from registry.services.reconciler import Reconciler
from registry.services.tokens import bootstrap
from registry.settings import Settings

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
    """Create the data dir, run migrations, create the default namespace and first admin token.

    Returns the context (its embedded executor is :func:`run_job_locally`) and the
    new admin token (None if tokens already existed). The token is also written to
    ``<data_dir>/admin_token`` (mode 0600).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database_url)
    ctx = Context.from_settings(settings, create_bucket=True, run_job=run_job_locally)
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


def uvicorn_config(app: Any, settings: Settings, *, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn configuration ``loreg serve`` runs ``app`` with (limits from settings)."""
    import uvicorn

    from registry.connections import guarded_protocol

    return uvicorn.Config(
        app,
        http=guarded_protocol(settings.header_timeout_s),
        log_level=log_level,
        access_log=False,
        h11_max_incomplete_event_size=64 * 1024,
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.keepalive_timeout_s,
    )


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
) -> None:
    """Run the registry until interrupted (embedded default, or Postgres/S3 from the env).

    It announces where it serves (and, on first start, the admin token) on
    stdout: two text lines, or with ``json_output`` one JSON object. The connection
    limits default to their LOREG_* settings; the keyword arguments override them.
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
    ctx, token = prepare(settings)
    sock = listening_socket(host, port)
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
    server = uvicorn.Server(uvicorn_config(create_app(context=ctx), settings, log_level=log_level))
    recovery = start_job_recovery(ctx)
    scrubber = fsck.start_periodic(ctx) if not settings.redis_url else None  # else: workers
    scheduler = start_mirror_scheduler(ctx)
    try:
        server.run(sockets=[sock])
    finally:
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
