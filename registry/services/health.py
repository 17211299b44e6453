"""Health checks: does each dependency (database, store, broker) answer right now?

Each check is one cheap round trip, run in parallel on a small pool of its own and
bounded by :data:`CHECK_TIMEOUT_S`, so a hung dependency makes the health answer
"unavailable" quickly instead of hanging it (the hung check finishes, or fails, in the
background within the dependency's own timeouts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

import registry
from registry.db import database_unavailable
from registry.errors import BrokerUnavailable
from registry.services.context import Context

#: Longest a health answer waits for one dependency.
CHECK_TIMEOUT_S = 5.0
_POOL = ThreadPoolExecutor(8, thread_name_prefix="health")


def check_database(ctx: Context) -> None:
    """``SELECT 1`` through the engine's pool; DatabaseUnavailable if it fails."""
    try:
        with ctx.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        outage = database_unavailable(exc, ctx.engine.url)
        if outage is not None:
            raise outage from exc
        raise


def check_broker(url: str) -> None:
    """PING the Redis broker at ``url``; BrokerUnavailable if it does not answer."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        parts = urlsplit(url)
        host = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        raise BrokerUnavailable(
            f"the job broker (redis at {host}) is unavailable ({exc}); retry later"
        ) from exc
    finally:
        client.close()


def _timed(check: Callable[[], None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
        error = None
    except Exception as exc:  # noqa: BLE001 - any failure means "unavailable", with its reason
        error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    took = round((time.perf_counter() - started) * 1000, 1)
    return {
        "status": "ok" if error is None else "unavailable",
        "latency_ms": took,
        "error": error,
    }


def health(ctx: Context, timeout: float = CHECK_TIMEOUT_S) -> dict[str, Any]:
    """The health report: overall status, versions and kinds, and one entry per dependency."""
    checks: dict[str, Callable[[], None]] = {
        "database": lambda: check_database(ctx),
        "store": ctx.store.check,
    }
    if ctx.settings.redis_url:
        url = ctx.settings.redis_url
        checks["broker"] = lambda: check_broker(url)
    futures = {name: _POOL.submit(_timed, check) for name, check in checks.items()}
    deadline = time.monotonic() + timeout
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except FutureTimeout:
            results[name] = {
                "status": "unavailable",
                "latency_ms": round(timeout * 1000, 1),
                "error": f"the {name} did not answer within {timeout:g} s",
            }
    healthy = all(r["status"] == "ok" for r in results.values())
    return {
        "status": "ok" if healthy else "unavailable",
        "version": registry.__version__,
        "storage": ctx.settings.storage_kind,
        "database": ctx.settings.database_kind,
        "checks": results,
    }
