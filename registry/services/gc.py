"""Garbage collection: expired uploads and blobs that no version references."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from registry.models import BaseModelFile, Blob, UploadSession, VersionFile, utcnow
from registry.services.context import Context
from registry.storage.base import blob_key, staging_key


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def collect_garbage(ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    """Delete expired uploads' staged data, and unreferenced blobs older than the grace period.

    A blob is kept while any version or base model references it, or while an
    open upload names it. Returns counts of what was removed.
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
            if _aware(blob.created_at) + grace > now:
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
