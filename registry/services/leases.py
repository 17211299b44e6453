"""Leases: one process at a time runs a periodic maintenance pass, deployment-wide.

Every ``loreg worker`` main process runs the store scrub on a timer
(:class:`registry.services.fsck.PeriodicFsck`). Without coordination, N workers scrub
the store N times per interval. A lease is a row of ``maintenance_leases`` (name,
holder, expiry) in the registry's own database: before a pass, a process claims the
lease with one conditional statement; it runs the pass only if the claim succeeded.

The holder renews its lease at each pass; another process takes it only once it has
expired, i.e. when the holder stopped (or stalled) for longer than the lease's
lifetime. Claims compare expiry times written with each process's own clock, so hosts
are assumed to agree on the time to well within a lease's lifetime (seconds of NTP
skew against intervals of minutes or hours).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa

from registry.models import MaintenanceLease, utcnow

_leases = cast(sa.Table, sa.inspect(MaintenanceLease).local_table)


def new_holder() -> str:
    """A holder name unique to this claimant: host, process id and a random suffix."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def claim(
    engine: sa.Engine, name: str, holder: str, lifetime_s: float, now: datetime | None = None
) -> bool:
    """Take or renew lease ``name`` for ``holder`` until ``lifetime_s`` from now.

    True when ``holder`` holds it now: it held it already, it had expired, or nobody
    had ever claimed it. False while another holder's claim is still running. One
    conditional UPDATE (and an INSERT the first time), in its own transaction; what
    they changed is read from ``RETURNING`` (psycopg 3 reports no row count for an
    ``ON CONFLICT DO NOTHING`` insert through SQLAlchemy).
    """
    if lifetime_s <= 0:
        raise ValueError(f"a lease lifetime must be > 0 seconds, got {lifetime_s}")
    now = now or utcnow()
    until = now + timedelta(seconds=lifetime_s)
    with engine.begin() as conn:
        taken = conn.execute(
            _leases.update()
            .where(
                _leases.c.name == name,
                sa.or_(_leases.c.holder == holder, _leases.c.expires_at <= now),
            )
            .values(holder=holder, expires_at=until)
            .returning(_leases.c.name)
        ).first()
        if taken is not None:
            return True
        inserted = conn.execute(
            _insert_if_absent(engine)
            .values(name=name, holder=holder, expires_at=until)
            .returning(_leases.c.name)
        ).first()
        return inserted is not None


def release(engine: sa.Engine, name: str, holder: str) -> None:
    """Give lease ``name`` up now if ``holder`` holds it (a clean stop: another process
    may take it at its next pass instead of waiting for the expiry)."""
    with engine.begin() as conn:
        conn.execute(_leases.delete().where(_leases.c.name == name, _leases.c.holder == holder))


def holder_of(engine: sa.Engine, name: str, now: datetime | None = None) -> str | None:
    """Who holds lease ``name`` now (None: nobody, or the last claim has expired)."""
    now = now or utcnow()
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(_leases.c.holder).where(_leases.c.name == name, _leases.c.expires_at > now)
        ).first()
    return None if row is None else str(row[0])


def _insert_if_absent(engine: sa.Engine) -> sa.Insert:
    """``INSERT ... ON CONFLICT (name) DO NOTHING`` in the engine's dialect."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(_leases).on_conflict_do_nothing(index_elements=["name"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(_leases).on_conflict_do_nothing(index_elements=["name"])
