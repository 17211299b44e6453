"""The ObjectStore contract, run against LocalStore and against S3Store on a real moto_server.

The S3 tests talk HTTP to a ``moto_server`` subprocess (no in-process mocks), and move
bytes through presigned URLs with httpx exactly as a client would.
"""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from registry.errors import BlobMismatch
from registry.storage.base import (
    InvalidKey,
    InvalidMultipart,
    MiB,
    ObjectNotFound,
    ObjectStore,
    blob_key,
    staging_key,
    validate_key,
)
from registry.storage.local import LocalStore
from tests.support.fixtures_s3 import TEST_PART_SIZE
from tests.support.s3server import MotoServer

pytestmark = pytest.mark.integration

BIG = 9 * MiB + 123  # crosses the 8 MiB read chunk and the 5 MiB test part size


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (fast even for many MiB)."""
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(store: ObjectStore, key: str, **kwargs) -> bytes:
    return b"".join(store.open(key, **kwargs))


class FailingStream(io.RawIOBase):
    """Yields ``good`` bytes, then raises OSError (a client that disconnects mid-upload)."""

    def __init__(self, good: bytes):
        self._data = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk = self._data.read(n)
        if not chunk:
            raise OSError("connection reset by peer")
        return chunk


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    """Each contract test runs on both backends."""
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    return request.getfixturevalue("s3_store")


def pending_uploads(store: ObjectStore) -> list:
    """Multipart uploads still open in the S3 bucket (empty for LocalStore)."""
    if isinstance(store, LocalStore):
        return []
    return store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


def temp_debris(store: ObjectStore) -> list:
    """Files left in LocalStore's temp area (empty for S3)."""
    if isinstance(store, LocalStore):
        return sorted((store.root / ".tmp").iterdir())
    return []


# ------------------------------------------------------------------ key helpers


def test_blob_key_layout():
    digest = sha(b"hello")
    assert blob_key(digest) == f"blobs/sha256/{digest[:2]}/{digest}"
    assert staging_key("up_1-X", digest) == f"uploads/up_1-X/{digest}"


@pytest.mark.parametrize("bad", ["", "ab" * 31, "A" * 64, "g" * 64, "a" * 65, " " + "a" * 63])
def test_blob_key_rejects_non_sha256(bad):
    with pytest.raises(InvalidKey, match="64 lowercase hex"):
        blob_key(bad)
    with pytest.raises(ValueError):
        staging_key("u1", bad)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 129, "a b"])
def test_staging_key_rejects_bad_upload_id(bad):
    with pytest.raises(InvalidKey, match="upload id"):
        staging_key(bad, sha(b""))


BAD_KEYS = ["", "/abs", "a/../b", "..", "../x", "a//b", "a/./b", ".tmp/x", "a/", "a\\b", "a\nb"]


@pytest.mark.parametrize("bad", [*BAD_KEYS, "x" * 1025])
def test_validate_key_rejects(bad):
    with pytest.raises(InvalidKey):
        validate_key(bad)


def test_validate_key_accepts_layout_keys():
    digest = sha(b"x")
    for key in (blob_key(digest), staging_key("abc", digest), "a/b-c_d.e/f"):
        assert validate_key(key) == key


@pytest.mark.parametrize("bad", ["/etc/passwd", "../escape", "a/../../b", ".tmp/put-x"])
def test_store_methods_validate_keys(store, bad):
    with pytest.raises(InvalidKey):
        store.put(bad, io.BytesIO(b"x"))
    for call in (store.stat, store.open, store.delete, lambda k: store.read_range(k, 0, 1)):
        with pytest.raises(InvalidKey):
            call(bad)
    with pytest.raises(InvalidKey):
        store.copy("ok", bad)


# ------------------------------------------------------------- round trips


@pytest.mark.parametrize("size", [0, 1, 1000, BIG])
def test_put_open_roundtrip(store, size):
    data = random_bytes(size, seed=size)
    key = blob_key(sha(data))
    store.put(key, io.BytesIO(data), size=size, sha256=sha(data))
    chunks = list(store.open(key))
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= 8 * MiB for c in chunks)
    if size > 8 * MiB:
        assert len(chunks) >= 2
    info = store.stat(key)
    assert info is not None and info.key == key and info.size == size
    assert info.sha256 in (None, sha(data))  # a backend may only vouch for the true digest


def test_open_small_chunks(store):
    data = random_bytes(10_000)
    store.put("k/small", io.BytesIO(data))
    chunks = list(store.open("k/small", chunk_size=4096))
    assert b"".join(chunks) == data and max(map(len, chunks)) <= 4096


def test_put_without_expectations_and_replace(store):
    store.put("a/b", io.BytesIO(b"first"))
    store.put("a/b", io.BytesIO(b"second, longer"))
    assert read_all(store, "a/b") == b"second, longer"
    assert store.stat("a/b").size == len(b"second, longer")


def test_read_range_matches_slicing(store):
    data = random_bytes(5000)
    store.put("r/obj", io.BytesIO(data))
    for start, end in [(0, 8), (8, 100), (0, 5000), (4990, 5000), (4990, 6000), (5000, 5010),
                       (7000, 8000), (123, 123), (0, 0)]:  # fmt: skip
        assert store.read_range("r/obj", start, end) == data[start:end], (start, end)


def test_read_range_rejects_bad_ranges(store):
    store.put("r/obj", io.BytesIO(b"abc"))
    for start, end in [(-1, 2), (3, 2)]:
        with pytest.raises(ValueError):
            store.read_range("r/obj", start, end)


def test_missing_keys(store):
    assert store.stat("no/such") is None
    with pytest.raises(ObjectNotFound):
        store.open("no/such")  # raised at call time, before iteration
    with pytest.raises(ObjectNotFound):
        store.read_range("no/such", 0, 10)
    with pytest.raises(ObjectNotFound):
        store.read_range("no/such", 0, 0)
    with pytest.raises(ObjectNotFound):
        store.copy("no/such", "dst/key")
    assert store.stat("dst/key") is None
    store.delete("no/such")  # idempotent


def test_delete(store):
    store.put("d/1", io.BytesIO(b"x"))
    store.put("d/2", io.BytesIO(b"y"))
    store.delete("d/1")
    store.delete("d/1")
    assert store.stat("d/1") is None
    assert read_all(store, "d/2") == b"y"
    store.put("d/1", io.BytesIO(b"again"))  # the folder pruned by delete comes back
    assert read_all(store, "d/1") == b"again"


@pytest.mark.parametrize("size", [100, BIG])
def test_copy(store, size):
    data = random_bytes(size, seed=3)
    src, dst = staging_key("up1", sha(data)), blob_key(sha(data))
    store.put(src, io.BytesIO(data))
    store.put(dst, io.BytesIO(b"old content"))
    store.copy(src, dst)
    assert read_all(store, dst) == data
    assert read_all(store, src) == data
    info = store.stat(dst)
    assert info.size == size and info.sha256 in (None, sha(data))
    store.copy(src, src)  # no-op
    assert read_all(store, src) == data


def test_list(store):
    before = datetime.now(UTC) - timedelta(seconds=2)
    objects = {"p/a-b": b"1", "p/a/b": b"22", "p/a/c/d": b"333", "p/b": b"4444", "q/x": b"5"}
    for key, data in objects.items():
        store.put(key, io.BytesIO(data))
    listed = list(store.list("p/"))
    keys = [key for key, _, _ in listed]
    assert keys == sorted(k for k in objects if k.startswith("p/"))
    for key, size, modified in listed:
        assert size == len(objects[key])
        assert modified.tzinfo is not None and modified.utcoffset() == timedelta(0)
        assert before <= modified <= datetime.now(UTC) + timedelta(seconds=2)
    assert [k for k, _, _ in store.list("p/a")] == ["p/a-b", "p/a/b", "p/a/c/d"]
    assert [k for k, _, _ in store.list("p/a/")] == ["p/a/b", "p/a/c/d"]
    assert sorted(k for k, _, _ in store.list("")) == sorted(objects)
    assert list(store.list("nothing/")) == []


# ------------------------------------------------------- verification, atomicity


@pytest.mark.parametrize("size", [1000, BIG])
def test_put_refuses_wrong_sha256_and_keeps_old_object(store, size):
    data = random_bytes(size, seed=5)
    key = blob_key(sha(data))
    store.put(key, io.BytesIO(b"previous"))
    wrong = bytearray(data)
    wrong[-1] ^= 1
    with pytest.raises(BlobMismatch, match="hash"):
        store.put(key, io.BytesIO(bytes(wrong)), size=size, sha256=sha(data))
    assert read_all(store, key) == b"previous"
    assert pending_uploads(store) == [] and temp_debris(store) == []


@pytest.mark.parametrize("declared", [999, 1001])
def test_put_refuses_wrong_size(store, declared):
    data = random_bytes(1000, seed=6)
    with pytest.raises(BlobMismatch, match="bytes"):
        store.put("s/obj", io.BytesIO(data), size=declared)
    assert store.stat("s/obj") is None
    assert temp_debris(store) == []


@pytest.mark.parametrize("good", [100, BIG])
def test_failing_stream_leaves_nothing(store, good):
    with pytest.raises(OSError, match="reset"):
        store.put("f/obj", FailingStream(random_bytes(good, seed=7)))
    assert store.stat("f/obj") is None
    assert list(store.list("f/")) == []
    assert pending_uploads(store) == [] and temp_debris(store) == []


def test_put_rejects_malformed_sha256(store):
    with pytest.raises(InvalidKey):
        store.put("m/obj", io.BytesIO(b"x"), sha256="ABC")
    assert store.stat("m/obj") is None


# ---------------------------------------------------------------- LocalStore only


def test_local_store_has_no_presigning(tmp_path):
    store = LocalStore(tmp_path)
    assert store.supports_presigned_urls is False
    assert store.presign_get("a/b", expires_in=60, filename="x") is None
    assert store.presign_put("a/b", expires_in=60, size=1, sha256=sha(b"x")) is None
    with pytest.raises(NotImplementedError, match="API"):
        store.create_multipart("a/b")
    with pytest.raises(NotImplementedError):
        store.complete_multipart("a/b", "id", [(1, "etag")])


def test_local_store_stays_inside_root(tmp_path):
    store = LocalStore(tmp_path / "root")
    store.put("x/y", io.BytesIO(b"data"))
    assert (tmp_path / "root" / "x" / "y").read_bytes() == b"data"
    with pytest.raises(InvalidKey):
        list(store.list("../"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


# ------------------------------------------------------------------- S3Store only


def s3_put(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.put(url, content=body, headers=headers or {}, timeout=60)


def test_s3_presigned_put_then_stat(s3_store):
    data = random_bytes(3000, seed=8)
    key = staging_key("up2", sha(data))
    put = s3_store.presign_put(key, expires_in=300, size=len(data), sha256=sha(data))
    assert put.headers["Content-Length"] == str(len(data))
    assert "x-amz-checksum-sha256" in put.headers
    response = s3_put(put.url, data, put.headers)
    assert response.status_code == 200, response.text
    assert s3_store.stat(key).size == len(data)
    assert read_all(s3_store, key) == data


def test_s3_presigned_put_wrong_body_is_never_vouched_for(s3_store, trusting):
    """S3 answers 400 BadDigest; moto_server 5.x accepts the bytes (it verifies nothing).

    Either way no store may report the declared digest for the wrong bytes, so the
    commit step (``stat().sha256 or hash the stream``) catches the lie.
    """
    data = random_bytes(3000, seed=9)
    wrong = random_bytes(3000, seed=10)
    key = staging_key("up3", sha(data))
    put = s3_store.presign_put(key, expires_in=300, size=len(data), sha256=sha(data))
    response = s3_put(put.url, wrong, put.headers)
    if response.is_success:  # moto_server
        info = trusting.stat(key)
        assert info.sha256 in (None, sha(wrong))
        assert s3_store.stat(key).sha256 is None
        assert sha(read_all(s3_store, key)) != sha(data)
    else:  # a verifying S3
        assert response.status_code == 400 and trusting.stat(key) is None


def test_s3_multipart_via_presigned_parts(s3_store, trusting):
    sizes = [TEST_PART_SIZE, TEST_PART_SIZE, TEST_PART_SIZE + 17]
    parts_data = [random_bytes(n, seed=20 + i) for i, n in enumerate(sizes)]
    data = b"".join(parts_data)
    key = staging_key("up4", sha(data))
    upload_id = s3_store.create_multipart(key)
    receipts = []
    for number, body in reversed(list(enumerate(parts_data, start=1))):  # any order works
        part = s3_store.presign_part(key, upload_id, number, expires_in=300)
        assert part.part_number == number
        response = s3_put(part.url, body)
        assert response.status_code == 200, response.text
        receipts.append((number, response.headers["etag"]))
    assert s3_store.stat(key) is None  # nothing visible before completion
    s3_store.complete_multipart(key, upload_id, receipts)
    assert read_all(s3_store, key) == data
    info = trusting.stat(key)
    assert info.size == len(data) and info.sha256 is None  # no full-object SHA-256 to trust
    assert pending_uploads(s3_store) == []


def test_s3_multipart_errors(s3_store):
    key = "mp/obj"
    upload_id = s3_store.create_multipart(key)
    response = s3_put(s3_store.presign_part(key, upload_id, 1, expires_in=60).url, b"x" * 100)
    with pytest.raises(InvalidMultipart):
        s3_store.complete_multipart(key, upload_id, [(1, '"0123456789abcdef"')])
    with pytest.raises(InvalidMultipart):
        s3_store.complete_multipart(key, upload_id, [(1, response.headers["etag"])] * 2)
    s3_store.abort_multipart(key, upload_id)
    s3_store.abort_multipart(key, upload_id)  # idempotent
    # (Completing an aborted upload: S3 says NoSuchUpload -> ObjectNotFound; moto_server 5.2
    # answers 500 from a KeyError, so that mapping is not exercised here.)
    with pytest.raises(ValueError):
        s3_store.presign_part(key, upload_id, 0, expires_in=60)
    assert s3_store.stat(key) is None and pending_uploads(s3_store) == []


def test_s3_presigned_get(s3_store):
    data = random_bytes(4096, seed=11)
    key = blob_key(sha(data))
    s3_store.put(key, io.BytesIO(data))
    assert httpx.get(s3_store.presign_get(key, expires_in=60), timeout=60).content == data
    url = s3_store.presign_get(key, expires_in=60, filename='dir/ad"apter é.safetensors')
    response = httpx.get(url, timeout=60)
    assert response.content == data
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="ad_apter _.safetensors"')
    assert "filename*=UTF-8''ad%22apter%20%C3%A9.safetensors" in disposition


def test_s3_presign_argument_checks(s3_store):
    with pytest.raises(ValueError, match="expires_in"):
        s3_store.presign_get("a/b", expires_in=0)
    with pytest.raises(ValueError, match="multipart"):
        s3_store.presign_put("a/b", expires_in=60, size=6 * 1024**3)
    with pytest.raises(InvalidKey):
        s3_store.presign_put("a/b", expires_in=60, size=1, sha256="nothex")


@pytest.fixture
def trusting(s3_store, s3_boto_session):
    """The same bucket seen through an S3Store that trusts the backend's checksums."""
    from registry.storage.s3 import S3Store

    return S3Store(
        s3_store.bucket,
        endpoint_url=s3_store.client.meta.endpoint_url,
        region="us-east-1",
        prefix=s3_store.prefix,
        part_size=TEST_PART_SIZE,
        trust_checksums=True,
        session=s3_boto_session,
    )


def test_s3_stat_reports_only_full_object_sha256(s3_store, trusting):
    small, big = random_bytes(1000, seed=12), random_bytes(BIG, seed=13)
    trusting.put("c/small", io.BytesIO(small))  # one PutObject with its SHA-256
    trusting.put("c/big", io.BytesIO(big))  # multipart: composite checksum only
    assert trusting.stat("c/small").sha256 == sha(small)
    assert trusting.stat("c/big").sha256 is None
    trusting.copy("c/big", "c/copied")  # CopyObject computes a full SHA-256 itself
    assert trusting.stat("c/copied").sha256 == sha(big)
    assert s3_store.stat("c/small").sha256 is None  # the fixture store trusts nothing


def test_s3_prefix_and_ensure_bucket(s3_endpoint, s3_admin_client, s3_boto_session):
    from registry.storage.s3 import S3Store

    bucket = f"loreg-test-{uuid.uuid4().hex[:12]}"
    store = S3Store(
        bucket,
        endpoint_url=s3_endpoint,
        region="us-east-1",
        prefix="/tenant/",
        session=s3_boto_session,
    )
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    store.put("a/b", io.BytesIO(b"data"))
    raw = s3_admin_client
    assert [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]] == ["tenant/a/b"]
    assert [k for k, _, _ in store.list("")] == ["a/b"]
    store.delete("a/b")
    raw.delete_bucket(Bucket=bucket)


@pytest.fixture
def public_store(s3_endpoint, s3_bucket, s3_boto_session):
    """An S3Store that talks to moto as 127.0.0.1 but signs URLs for ``localhost``.

    The same server under two host spellings stands in for ``http://minio:9000``
    (inside Compose) and ``http://localhost:9000`` (the published port).
    """
    from registry.storage.s3 import S3Store

    inside = urlsplit(s3_endpoint)
    assert inside.hostname == "127.0.0.1"
    return S3Store(
        s3_bucket,
        endpoint_url=s3_endpoint,
        public_endpoint_url=f"http://localhost:{inside.port}",
        region="us-east-1",
        part_size=TEST_PART_SIZE,
        trust_checksums=False,
        session=s3_boto_session,
    )


def test_s3_presigned_urls_are_signed_for_the_public_endpoint(public_store, s3_endpoint):
    public_host = f"localhost:{urlsplit(s3_endpoint).port}"
    assert public_store.client.meta.endpoint_url == s3_endpoint  # server-side calls
    data = random_bytes(3000, seed=30)
    key = staging_key("pub1", sha(data))
    put = public_store.presign_put(key, expires_in=300, size=len(data), sha256=sha(data))
    assert urlsplit(put.url).netloc == public_host
    response = s3_put(put.url, data, put.headers)
    assert response.status_code == 200, response.text
    assert public_store.stat(key).size == len(data)  # seen through the internal endpoint

    url = public_store.presign_get(key, expires_in=300, filename="a.bin")
    assert urlsplit(url).netloc == public_host
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-disposition"].startswith('attachment; filename="a.bin"')


def test_s3_presigned_parts_are_signed_for_the_public_endpoint(public_store, s3_endpoint):
    public_host = f"localhost:{urlsplit(s3_endpoint).port}"
    parts_data = [random_bytes(TEST_PART_SIZE, seed=31), random_bytes(100, seed=32)]
    data = b"".join(parts_data)
    key = staging_key("pub2", sha(data))
    upload_id = public_store.create_multipart(key)
    receipts = []
    for number, body in enumerate(parts_data, start=1):
        part = public_store.presign_part(key, upload_id, number, expires_in=300)
        assert urlsplit(part.url).netloc == public_host
        response = s3_put(part.url, body)
        assert response.status_code == 200, response.text
        receipts.append((number, response.headers["etag"]))
    public_store.complete_multipart(key, upload_id, receipts)
    assert read_all(public_store, key) == data
    assert pending_uploads(public_store) == []


def test_s3_without_public_endpoint_signs_for_the_endpoint(s3_store, s3_endpoint, s3_bucket):
    from registry.storage.s3 import S3Store

    assert s3_store.presign_client is s3_store.client
    url = s3_store.presign_get("a/b", expires_in=60)
    assert urlsplit(url).netloc == urlsplit(s3_endpoint).netloc
    same = S3Store(s3_bucket, endpoint_url=s3_endpoint, public_endpoint_url=s3_endpoint)
    assert same.presign_client is same.client


def test_the_server_context_signs_for_the_public_endpoint_from_settings(
    tmp_path, s3_endpoint, s3_bucket
):
    from registry.services.context import Context
    from registry.settings import Settings

    public = f"http://localhost:{urlsplit(s3_endpoint).port}"
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        s3_bucket=s3_bucket,
        s3_endpoint_url=s3_endpoint,
        s3_public_endpoint_url=public,
        s3_region="us-east-1",
    )
    ctx = Context.from_settings(settings)
    try:
        assert ctx.store.client.meta.endpoint_url == s3_endpoint
        url = ctx.store.presign_get("a/b", expires_in=60)
        assert urlsplit(url).netloc == urlsplit(public).netloc
    finally:
        ctx.close()


def test_moto_server_stops():
    with MotoServer() as server:
        assert httpx.get(server.endpoint_url + "/moto-api/", timeout=10).status_code < 500
        url = server.endpoint_url
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/moto-api/", timeout=2)
