"""``loreg worker``: a Celery worker for the job queues, plus the reconciler.

Settings come from the environment (``LOREG_*``, see
:meth:`registry.settings.Settings.from_env`); ``LOREG_REDIS_URL`` is required.
The worker consumes ``gpu`` and ``cpu`` by default and runs ``--concurrency``
jobs at once in child processes. Its main process also runs a
:class:`registry.services.reconciler.Reconciler` thread (started once the worker
is ready, stopped at shutdown), the store scrub when ``LOREG_FSCK_INTERVAL`` is set,
and the mirror scheduler (``LOREG_MIRROR_POLL_S``, default 60 s; see
:mod:`registry.services.mirrors`). With ``--beat`` it also runs Celery beat, which
sends the scheduled gc (``loreg.gc`` every ``LOREG_GC_INTERVAL_S``,
:mod:`workers.celery_app`); run one beat per deployment (this flag on one worker,
or ``celery beat`` on its own). A worker that runs ``mirror_import`` jobs must not
have ``HF_HUB_OFFLINE`` set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from celery import Celery, signals

from registry.queue import QUEUES, CelerySender
from registry.services.context import Context
from registry.services.fsck import PeriodicFsck
from registry.services.mirrors import MirrorScheduler
from registry.services.reconciler import Reconciler
from registry.settings import Settings
from workers.celery_app import make_celery

log = logging.getLogger("loreg.worker")


def _queues(text: str) -> list[str]:
    names = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: queues must be a comma-separated subset of {','.join(QUEUES)}"
        )
    return list(dict.fromkeys(names))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``loreg worker``."""
    parser = argparse.ArgumentParser(
        prog="loreg worker", description="Run jobs from the Celery queues (needs LOREG_REDIS_URL)."
    )
    parser.add_argument(
        "--queues", type=_queues, default=list(QUEUES), help="comma-separated: gpu,cpu (default)"
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=1, help="jobs run at once (default 1)"
    )
    parser.add_argument("--loglevel", default="INFO", help="Celery log level (default INFO)")
    parser.add_argument(
        "--json", action="store_true", help="announce the worker's settings as one JSON line"
    )
    parser.add_argument(
        "--reconcile-interval",
        type=_interval,
        default=None,
        help="seconds between reconciler passes (default: from the job delays; 0 disables)",
    )
    parser.add_argument(
        "--beat",
        action="store_true",
        help="also run Celery beat in this worker (the scheduled gc); run exactly one beat",
    )
    return parser


Periodic = PeriodicFsck | Reconciler | MirrorScheduler


def _run_while_up(name: str, settings: Settings, make: Callable[[Context], Periodic]) -> None:
    """Run ``make(ctx)``'s periodic thread in the worker's main process while it is up."""
    state: dict[str, Periodic] = {}

    def start(**_kwargs) -> None:
        if name not in state:
            state[name] = make(Context.from_settings(settings))
            state[name].start()
            log.info("%s started (every %.1f s)", name, state[name].interval_s)

    def stop(**_kwargs) -> None:
        thread = state.pop(name, None)
        if thread is not None:
            thread.stop()
            thread.ctx.close()

    signals.worker_ready.connect(start, weak=False, dispatch_uid=f"loreg-{name}-start")
    signals.worker_shutdown.connect(stop, weak=False, dispatch_uid=f"loreg-{name}-stop")


def install_reconciler(app: Celery, settings: Settings, interval_s: float | None) -> None:
    """Run a reconciler thread in the worker's main process while it is up."""

    sender = CelerySender(settings, app)
    _run_while_up("reconciler", settings, lambda ctx: Reconciler(ctx, sender.send, interval_s))


def install_fsck(settings: Settings) -> None:
    """Production: scrub the store every ``LOREG_FSCK_INTERVAL`` seconds in the main process."""
    _run_while_up("fsck", settings, lambda ctx: PeriodicFsck(ctx, settings.fsck_interval_s))


def install_mirror_scheduler(app: Celery, settings: Settings) -> None:
    """Submit due mirror syncs from the worker's main process (``LOREG_MIRROR_POLL_S``).

    Every worker runs one; each due mirror is claimed by a conditional UPDATE, so
    one job is submitted per mirror and due time however many workers run
    (:mod:`registry.services.mirrors`).
    """
    sender = CelerySender(settings, app)
    _run_while_up(
        "mirror-scheduler",
        settings,
        lambda ctx: MirrorScheduler(ctx, sender.send, settings.mirror_poll_s),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until it is stopped (SIGTERM: finish running jobs, then exit)."""
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    if not settings.redis_url:
        sys.stderr.write(
            "error: LOREG_REDIS_URL is not set: the worker needs the Redis broker the API "
            "sends jobs to (e.g. redis://localhost:6379/0)\n"
        )
        return 2
    app = make_celery(settings)
    if args.json:
        announcement = {
            "queues": args.queues,
            "concurrency": args.concurrency,
            "database": settings.database_kind,
            "storage": settings.storage_kind,
            "reconcile_interval": args.reconcile_interval,
            "beat": args.beat,
        }
        print(json.dumps(announcement, sort_keys=True), flush=True)
    if args.reconcile_interval != 0:
        install_reconciler(app, settings, args.reconcile_interval)
    if settings.fsck_interval_s > 0:
        install_fsck(settings)
    if settings.mirror_poll_s > 0:
        install_mirror_scheduler(app, settings)
    worker_args = [
        "worker",
        f"--queues={','.join(args.queues)}",
        f"--concurrency={args.concurrency}",
        f"--loglevel={args.loglevel}",
        f"--hostname=loreg-{os.getpid()}@%h",
        "--pool=prefork",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.beat:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        worker_args += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    code = app.start(worker_args)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
