"""Garbage collection on both backends: orphaned blobs go, referenced blobs stay.

An upload whose blobs were sent but never committed protects them while it is
open; once it has expired and the blobs are older than the grace period they are
removed from the store and from the ``blobs`` table, while every blob a committed
version references is kept. On S3, an expired upload's staged objects are deleted
and its pending multipart uploads aborted. A second run finds nothing to do.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select

from registry.models import Blob, UploadSession, utcnow
from registry.services.gc import collect_garbage
from registry.storage.base import blob_key, staging_key
from tests.support.publish import publish, random_safetensors, send_blob, start_upload

pytestmark = pytest.mark.integration

HOUR = 3600
UPLOAD_EXPIRY_S = 24 * HOUR
GC_GRACE_S = 48 * HOUR  # longer than the upload expiry, so the two deadlines differ
MiB = 2**20
NOTHING = {"expired_uploads": 0, "deleted_blobs": 0, "freed_bytes": 0}


@pytest.fixture
def registry_settings_overrides() -> dict:
    """Distinct expiry and grace periods; 5 MiB multipart threshold and parts on S3."""
    return {
        "upload_expiry_s": UPLOAD_EXPIRY_S,
        "gc_grace_s": GC_GRACE_S,
        "multipart_threshold_bytes": 5 * MiB,
        "multipart_part_size_bytes": 5 * MiB,
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_rows(ctx) -> dict[str, int]:
    """The ``blobs`` table as {sha256: size}."""
    with Session(ctx.engine) as session:
        return {b.sha256: b.size for b in session.exec(select(Blob)).all()}


def stored_blob_keys(ctx) -> set[str]:
    """Keys of every content-addressed blob in the object store."""
    return {key for key, _, _ in ctx.store.list("blobs/")}


def upload_status(ctx, upload_id: str) -> str:
    with Session(ctx.engine) as session:
        return session.get(UploadSession, upload_id).status


def expiry_of(upload: dict) -> datetime:
    return datetime.fromisoformat(upload["expires_at"])


def test_uncommitted_blobs_are_collected_after_expiry_and_grace(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    ctx = registry_server.ctx
    card = b"# shared model card\n"
    kept_files = {**adapter_files, "README.md": card}
    r, _ = publish(admin_api, "kept", kept_files)
    assert r.status_code == 201, r.text
    kept = {sha(b): len(b) for b in kept_files.values()}

    # a second push sends its new blobs but is never committed
    orphan_files = {**other_adapter_files, "README.md": card}
    r = start_upload(admin_api, "abandoned", orphan_files)
    assert r.status_code == 201, r.text
    upload = r.json()
    for blob in upload["blobs"]:
        if not blob["present"]:
            data = next(b for b in orphan_files.values() if sha(b) == blob["sha256"])
            assert send_blob(admin_api, blob, data).status_code == 200
    orphans = {sha(b): len(b) for b in orphan_files.values() if sha(b) not in kept}
    assert orphans and sha(card) not in orphans
    assert blob_rows(ctx) == {**kept, **orphans}
    assert stored_blob_keys(ctx) == {blob_key(s) for s in {**kept, **orphans}}

    # while the upload is open nothing goes
    assert collect_garbage(ctx) == NOTHING
    assert blob_rows(ctx) == {**kept, **orphans}

    # expired, but the blobs are still inside the grace period: only the upload ends
    just_expired = expiry_of(upload) + timedelta(minutes=1)
    assert collect_garbage(ctx, now=just_expired) == {**NOTHING, "expired_uploads": 1}
    assert upload_status(ctx, upload["upload_id"]) == "expired"
    assert blob_rows(ctx) == {**kept, **orphans}

    # past expiry and grace: the orphans go, the committed version's blobs stay
    later = utcnow() + timedelta(seconds=UPLOAD_EXPIRY_S + GC_GRACE_S + HOUR)
    assert collect_garbage(ctx, now=later) == {
        "expired_uploads": 0,
        "deleted_blobs": len(orphans),
        "freed_bytes": sum(orphans.values()),
    }
    for digest in orphans:
        assert ctx.store.stat(blob_key(digest)) is None
    assert blob_rows(ctx) == kept
    assert stored_blob_keys(ctx) == {blob_key(s) for s in kept}

    # the committed version still downloads intact
    view = admin_api.get("/v1/resolve/kept-v1").json()
    with httpx.Client(timeout=30) as plain:
        for f in view["files"]:
            assert plain.get(f["url"]).content == kept_files[f["path"]]

    # a second run removes nothing
    assert collect_garbage(ctx, now=later) == NOTHING
    assert blob_rows(ctx) == kept
    assert stored_blob_keys(ctx) == {blob_key(s) for s in kept}


@pytest.mark.parametrize("registry_server", ["postgres_s3"], indirect=True)
def test_expired_upload_staging_and_multipart_are_cleaned_on_s3(
    registry_server, admin_api, adapter_files, s3_admin_client
):
    ctx, bucket = registry_server.ctx, registry_server.settings.s3_bucket
    big = random_safetensors(6 * MiB)  # over the 5 MiB threshold: two parts
    files = {**adapter_files, "assets/big.safetensors": big}
    r = start_upload(admin_api, "staged", files)
    assert r.status_code == 201, r.text
    upload = r.json()
    upload_id = upload["upload_id"]
    by_sha = {b["sha256"]: b for b in upload["blobs"]}
    weights = adapter_files["adapter_model.safetensors"]

    # a single-PUT blob sent to staging, never completed
    put = by_sha[sha(weights)]["upload"]
    assert put["method"] == "put"
    with httpx.Client(timeout=60) as plain:
        assert plain.put(put["url"], content=weights, headers=put["headers"]).status_code == 200
        # one part of the multipart blob sent, never completed
        multi = by_sha[sha(big)]["upload"]
        assert multi["method"] == "multipart" and len(multi["parts"]) == 2
        part = multi["parts"][0]
        assert plain.put(part["url"], content=big[: multi["part_size"]]).status_code == 200

    staged = staging_key(upload_id, sha(weights))
    assert ctx.store.stat(staged).size == len(weights)
    pending = s3_admin_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in pending] == [staging_key(upload_id, sha(big))]

    later = utcnow() + timedelta(seconds=UPLOAD_EXPIRY_S + GC_GRACE_S + HOUR)
    assert collect_garbage(ctx, now=later) == {**NOTHING, "expired_uploads": 1}
    assert ctx.store.stat(staged) is None
    assert s3_admin_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert list(ctx.store.list("uploads/")) == []
    assert blob_rows(ctx) == {}
    assert upload_status(ctx, upload_id) == "expired"

    assert collect_garbage(ctx, now=later) == NOTHING
    # the expired upload cannot be committed any more
    r = admin_api.post(f"/v1/uploads/{upload_id}/commit")
    assert r.status_code == 410, r.text
    assert r.json()["error"]["code"] == "upload_expired"


def _backdate_blobs(ctx, by: timedelta) -> None:
    """Make every blob look ``by`` older (as if uploaded long ago)."""
    with Session(ctx.engine) as session:
        for blob in session.exec(select(Blob)).all():
            blob.created_at = blob.created_at - by
            session.add(blob)
        session.commit()


def test_deleted_versions_blobs_go_only_after_the_grace_period_from_the_delete(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    ctx = registry_server.ctx
    card = b"# shared model card\n"
    kept_files = {**adapter_files, "README.md": card}
    gone_files = {**other_adapter_files, "README.md": card}
    assert publish(admin_api, "kept", kept_files)[0].status_code == 201
    assert publish(admin_api, "gone", gone_files)[0].status_code == 201
    kept = {sha(b): len(b) for b in kept_files.values()}
    gone = {sha(b): len(b) for b in gone_files.values() if sha(b) not in kept}
    assert gone and sha(card) in kept
    # blobs uploaded long ago: a grace counted from creation would let them go at once
    _backdate_blobs(ctx, timedelta(seconds=10 * GC_GRACE_S))

    r = admin_api.delete("/v1/adapters/default/gone/versions/1")
    assert r.status_code == 200, r.text
    assert r.json()["unreferenced_blobs"] == len(gone)  # the shared card is still used
    deleted_at = utcnow()
    with Session(ctx.engine) as session:
        marks = {b.sha256: b.unreferenced_since for b in session.exec(select(Blob)).all()}
    assert {s for s, at in marks.items() if at is not None} == set(gone)

    # during the grace period nothing goes
    assert collect_garbage(ctx, now=deleted_at) == NOTHING
    inside = deleted_at + timedelta(seconds=GC_GRACE_S - HOUR)
    assert collect_garbage(ctx, now=inside) == NOTHING
    assert blob_rows(ctx) == {**kept, **gone}
    assert stored_blob_keys(ctx) == {blob_key(s) for s in {**kept, **gone}}

    # after it the deleted version's own blobs go; the shared and the kept ones stay
    after = deleted_at + timedelta(seconds=GC_GRACE_S + HOUR)
    assert collect_garbage(ctx, now=after) == {
        "expired_uploads": 0,
        "deleted_blobs": len(gone),
        "freed_bytes": sum(gone.values()),
    }
    assert blob_rows(ctx) == kept
    assert stored_blob_keys(ctx) == {blob_key(s) for s in kept}
    view = admin_api.get("/v1/resolve/kept-v1").json()
    with httpx.Client(timeout=30) as plain:
        for f in view["files"]:
            assert plain.get(f["url"]).content == kept_files[f["path"]]
    assert collect_garbage(ctx, now=after) == NOTHING


def test_a_blob_marked_unreferenced_but_used_again_is_never_removed(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    ctx = registry_server.ctx
    assert publish(admin_api, "first", other_adapter_files)[0].status_code == 201
    assert admin_api.delete("/v1/adapters/default/first").status_code == 200
    # published again (under another name) before any gc ran: the marks stay, the blobs
    # are referenced again
    assert publish(admin_api, "second", other_adapter_files)[0].status_code == 201
    with Session(ctx.engine) as session:
        marked = [b for b in session.exec(select(Blob)).all() if b.unreferenced_since]
    assert marked
    far = utcnow() + timedelta(seconds=100 * GC_GRACE_S)
    assert collect_garbage(ctx, now=far) == NOTHING
    assert blob_rows(ctx) == {sha(b): len(b) for b in other_adapter_files.values()}
    assert admin_api.get("/v1/resolve/second-v1").status_code == 200
