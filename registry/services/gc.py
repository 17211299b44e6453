"""Garbage collection: expired uploads and blobs that no version references.

A blob no version, base model or open upload references is removed once its grace
period (``LOREG_GC_GRACE_S``) has passed, counted from when it became unreferenced:
``blobs.unreferenced_since``, set by a delete (:mod:`registry.services.deletion`),
or its creation for a blob never committed. A blob something references is never
removed, whatever its mark says (a later publish may have reused it).

It runs on request (``POST /v1/admin/gc``, ``loreg gc``) and on a schedule every
``LOREG_GC_INTERVAL_S`` seconds: :class:`PeriodicGc` in ``loreg serve``'s leader in
embedded mode, a Celery beat entry (``workers.celery_app``) with a broker.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from registry.models import BaseModelFile, Blob, UploadSession, VersionFile, utcnow
from registry.services.context import Context
from registry.services.periodic import PeriodicThread
from registry.storage.base import blob_key, staging_key

log = logging.getLogger("loreg.gc")


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def collect_garbage(ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    """Delete expired uploads' staged data, and blobs unreferenced for the grace period.

    A blob is kept while any version or base model references it, or while an
    open upload names it; otherwise it goes once ``now`` is the grace period past
    its ``unreferenced_since`` (or, when never set, its ``created_at``). Returns
    counts of what was removed.
    """
    now = now or utcnow()
    grace = timedelta(seconds=ctx.settings.gc_grace_s)
    removed_uploads = removed_blobs = freed = 0
    with Session(ctx.engine) as session:
        open_shas: set[str] = set()
        for up in session.exec(select(UploadSession).where(UploadSession.status == "open")).all():
            if _aware(up.expires_at) < now:
                for f in up.spec.get("files", []):
                    ctx.store.delete(staging_key(up.id, f["sha256"]))
                for sha, mp_id in (up.multipart or {}).items():
                    # already completed or aborted: nothing to abort
                    with contextlib.suppress(Exception):
                        ctx.store.abort_multipart(staging_key(up.id, sha), mp_id)
                up.status = "expired"
                session.add(up)
                removed_uploads += 1
            else:
                open_shas.update(f["sha256"] for f in up.spec.get("files", []))
        referenced = set(session.exec(select(VersionFile.blob_sha256)).all())
        referenced |= set(session.exec(select(BaseModelFile.blob_sha256)).all())
        for blob in session.exec(select(Blob)).all():
            if blob.sha256 in referenced or blob.sha256 in open_shas:
                continue
            if _aware(blob.unreferenced_since or blob.created_at) + grace > now:
                continue
            ctx.store.delete(blob_key(blob.sha256))
            session.delete(blob)
            removed_blobs += 1
            freed += blob.size
        session.commit()
    return {
        "expired_uploads": removed_uploads,
        "deleted_blobs": removed_blobs,
        "freed_bytes": freed,
    }


class PeriodicGc(PeriodicThread):
    """A daemon thread running :func:`collect_garbage` every ``interval_s`` seconds.

    The first pass runs one interval after :meth:`start`. Errors (store or
    database down) are logged and the next pass tries again.
    """

    def __init__(self, ctx: Context, interval_s: float):
        super().__init__(interval_s, name="gc", first_pass_now=False)
        self.ctx = ctx
        self.last_report: dict[str, Any] | None = None

    def run_once(self) -> dict[str, Any] | None:
        """One pass; returns its report, or None when it failed."""
        try:
            self.last_report = collect_garbage(self.ctx)
            return self.last_report
        except Exception as exc:  # noqa: BLE001 - keep collecting after outages
            log.warning("gc pass failed: %s", exc)
            return None
        finally:
            self.passes += 1


def start_periodic(ctx: Context) -> PeriodicGc | None:
    """Embedded mode's scheduled gc (``LOREG_GC_INTERVAL_S``), started; None when it is 0."""
    interval = ctx.settings.gc_interval_s
    return PeriodicGc(ctx, interval).start() if interval > 0 else None
