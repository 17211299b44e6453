"""``loreg serve --workers N``: N uvicorn child processes serving one listening socket.

The parent (:func:`registry.serve.serve`) migrates, bootstraps, binds the TCP_NODELAY
socket and announces once, and stays the single leader: any background thread
runs there, never in a child. :func:`supervise` then hands the socket to N children
with uvicorn's own supervisor, ``uvicorn.supervisors.Multiprocess``: it starts them
with the ``spawn`` method, restarts one that dies (SIGHUP replaces them one by one)
and stops them all on SIGINT or SIGTERM.

``spawn`` pickles each child's config, so :class:`ChildConfig` carries only the
resolved settings: the guarded h11 protocol class (made per header timeout, not
picklable) and the app with its own Context (engine, connection pool, store) are
built in the child, by :meth:`ChildConfig.load`. The settings hold the secret key
the parent read once, so every child signs and checks download URLs alike.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from registry.serve import config_options, run_job_locally
from registry.settings import Settings

__all__ = ["ChildConfig", "supervise", "watch_parent"]

logger = logging.getLogger("uvicorn.error")


async def _built_in_child(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    """Stands for the app until :meth:`ChildConfig.load` builds it in the child."""
    raise RuntimeError("the app of a serving process is built by ChildConfig.load")


class ChildConfig(uvicorn.Config):
    """The uvicorn config of one serving child process, picklable for ``spawn``.

    It holds the settings and the parent's pid; the app, its Context and the http
    protocol class are made by :meth:`load`, which uvicorn calls in the child.
    """

    def __init__(self, settings: Settings, *, workers: int, log_level: str = "warning") -> None:
        self.settings = settings
        self.parent_pid = os.getpid()
        super().__init__(
            _built_in_child,
            http="h11",
            workers=workers,
            **config_options(settings, log_level=log_level),
        )

    def load(self) -> None:
        """In the child: build the protocol class and the app, then load as uvicorn does.

        A child that cannot build its app exits with uvicorn's startup-failure status,
        so the supervisor stops them all instead of restarting it forever.
        """
        try:
            self._build()
        except Exception:
            logger.exception("loreg serve: a serving process could not build the app")
            sys.exit(STARTUP_FAILURE)
        watch_parent(self.parent_pid)
        super().load()

    def _build(self) -> None:
        """Make the h11 protocol class and the app (with its own Context) of this process."""
        from registry.app import create_app
        from registry.connections import guarded_protocol
        from registry.services.context import Context

        self.http = guarded_protocol(self.settings.header_timeout_s)
        self.app = create_app(context=Context.from_settings(self.settings, run_job=run_job_locally))


def watch_parent(parent_pid: int, interval: float = 0.5) -> threading.Thread:
    """Stop this process (a SIGTERM to itself) once ``parent_pid`` is no longer its parent.

    A parent killed outright (SIGKILL) cannot stop its children; this keeps them from
    serving on, unsupervised, as orphans.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="loreg-watch-parent", daemon=True)
    thread.start()
    return thread


def supervise(
    settings: Settings, sock: socket.socket, workers: int, *, log_level: str = "warning"
) -> None:
    """Serve ``sock`` with ``workers`` child processes until SIGINT or SIGTERM.

    Returns once every child has stopped. When a child fails before it serves (the
    supervisor then stops the rest), exits with uvicorn's startup-failure status.
    """
    supervisor = Multiprocess(ChildConfig(settings, workers=workers, log_level=log_level), [sock])
    supervisor.run()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        print(f"loreg serve: serving process {failed[0]} failed to start", file=sys.stderr)
        raise SystemExit(STARTUP_FAILURE)
