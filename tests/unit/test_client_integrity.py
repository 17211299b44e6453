"""The cache's integrity: fingerprinted verification, ``cache verify``, resumed downloads,
missing store objects and a full disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loreg import cli
from loreg.cache import Cache
from loreg.errors import DiskFullError, FilesMissingError, IntegrityError
from loreg.http import ApiClient, default_timeout
from loreg.transfer import BlobTarget, Transfers
from tests.support.fake_registry import FakeRegistry, make_adapter_dir, make_registry
from tests.support.http_peer import Answer, Peer, peer_fixture  # noqa: F401 - fixture


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOREG_OFFLINE", "LOREG_DEBUG", "LOREG_TOKEN", "LOREG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOREG_RETRIES", "1")
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def published(tmp_path: Path) -> FakeRegistry:
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "publisher") as publisher:
        publisher.push(make_adapter_dir(tmp_path / "a1", seed=1, weight_bytes=200_000), "medical")
    fake.seen.clear()
    return fake


def _weights_blob(cache_dir: Path, tmp_path: Path) -> Path:
    data = (tmp_path / "a1" / "adapter_model.safetensors").read_bytes()
    return cache_dir / "blobs" / hashlib.sha256(data).hexdigest()


def _flip_byte(path: Path, offset: int = 1234) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _blob_gets(fake: FakeRegistry) -> list[str]:
    return [s.url for s in fake.requests("GET", "/v1/blobs/")]


# ------------------------------------------------------------- item 5: fingerprints
def test_flipped_byte_with_a_changed_fingerprint_is_dropped_and_fetched_again(
    published: FakeRegistry, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    source = (tmp_path / "a1" / "adapter_model.safetensors").read_bytes()
    with make_registry(published, cache_dir) as registry:
        path = registry.pull("medical")
        blob = _weights_blob(cache_dir, tmp_path)
        size = blob.stat().st_size
        _flip_byte(blob)
        st = blob.stat()
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later write
        assert blob.stat().st_size == size
        published.seen.clear()
        again = registry.pull("medical")
    assert again == path
    assert (path / "adapter_model.safetensors").read_bytes() == source
    assert len(_blob_gets(published)) == 1  # only the corrupt blob came again


def test_rewritten_blob_with_the_same_bytes_is_rehashed_not_refetched(
    published: FakeRegistry, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        path = registry.pull("medical")
        blob = _weights_blob(cache_dir, tmp_path)
        data = blob.read_bytes()
        blob.unlink()
        blob.write_bytes(data)  # new inode and mtime, same bytes
        published.seen.clear()
        assert registry.pull("medical") == path
    assert _blob_gets(published) == []
    assert (path / "adapter_model.safetensors").read_bytes() == data


def test_warm_pull_checks_fingerprints_with_one_stat_per_file(
    published: FakeRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        registry.pull("medical")
        import loreg.cache as cache_module

        hashed: list[Path] = []
        real = cache_module.sha256_file
        monkeypatch.setattr(cache_module, "sha256_file", lambda p: hashed.append(p) or real(p))
        published.seen.clear()
        registry.pull("medical")
    assert hashed == []  # nothing re-hashed on an unchanged cache
    assert _blob_gets(published) == []


def test_cache_verify_finds_a_corrupt_blob_whose_fingerprint_was_forged_back(
    published: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_dir = tmp_path / "cache"
    source = (tmp_path / "a1" / "adapter_model.safetensors").read_bytes()
    with make_registry(published, cache_dir) as registry:
        path = registry.pull("medical")
    blob = _weights_blob(cache_dir, tmp_path)
    st = blob.stat()
    _flip_byte(blob)
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))  # fingerprint forged back
    assert (blob.stat().st_size, blob.stat().st_mtime_ns, blob.stat().st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )

    code = cli.main(["cache", "verify", "--json"])
    out, err = capsys.readouterr()
    assert code == IntegrityError.exit_code, err
    report = json.loads(out)
    assert report["checked"] == 3
    assert [c["sha256"] for c in report["corrupt"]] == [blob.name]
    assert report["corrupt"][0]["used_by"] == ["default/medical-v1 adapter_model.safetensors"]
    assert not blob.exists()

    code = cli.main(["cache", "verify"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2 blob(s)" in out and "no corrupt blob" in out

    with make_registry(published, cache_dir) as registry:
        published.seen.clear()
        assert registry.pull("medical") == path
    assert (path / "adapter_model.safetensors").read_bytes() == source
    assert len(_blob_gets(published)) == 1


def test_cache_verify_human_output_names_the_corrupt_file(
    published: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        registry.pull("medical")
    _flip_byte(_weights_blob(cache_dir, tmp_path))
    code = cli.main(["cache", "verify", "--cache-dir", str(cache_dir)])
    out, err = capsys.readouterr()
    assert code == IntegrityError.exit_code
    assert "1 corrupt" in out and "adapter_model.safetensors" in out and "dropped" in out


def test_offline_pull_of_a_corrupt_blob_is_a_cache_miss(
    published: FakeRegistry, tmp_path: Path
) -> None:
    from loreg.errors import OfflineCacheMissError

    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        registry.pull("medical")
    blob = _weights_blob(cache_dir, tmp_path)
    _flip_byte(blob)
    st = blob.stat()
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with (
        make_registry(published, cache_dir, offline=True) as registry,
        pytest.raises(OfflineCacheMissError),
    ):
        registry.pull("medical")
    assert not blob.exists()


# ------------------------------------------------------------ item 6: resume with Range
def _transfers(retries: int = 1) -> tuple[ApiClient, Transfers]:
    api = ApiClient("http://127.0.0.1:9", "t")
    return api, Transfers(api, timeout=default_timeout(30), retries=retries, backoff_s=0)


def _blob(peer: Peer, size: int = 3 * 2**20 + 5) -> tuple[str, bytes]:
    data = random.Random(size).randbytes(size)
    sha = hashlib.sha256(data).hexdigest()
    peer.blobs[sha] = data
    return sha, data


def _download(peer: Peer, cache: Cache, sha: str, size: int, retries: int = 1) -> None:
    api, transfers = _transfers(retries)
    with api, contextlib.closing(transfers):
        target = BlobTarget(sha, size, f"{peer.url}/blob/{sha}", "adapter_model.safetensors")
        transfers.download([target], cache, concurrency=1)


def test_partial_download_is_resumed_with_a_range_request(peer: Peer, tmp_path: Path) -> None:
    sha, data = _blob(peer)
    cache = Cache(tmp_path / "cache")
    half = len(data) // 2
    partial = cache.partial_path(sha)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:half])
    _download(peer, cache, sha, len(data))
    gets = peer.requests("/blob/")
    assert [g.headers.get("range") for g in gets] == [f"bytes={half}-"]
    assert gets[0].sent == len(data) - half
    assert cache.blob_path(sha).read_bytes() == data
    assert list(cache.tmp_dir.iterdir()) == []


def test_server_ignoring_range_restarts_cleanly(peer: Peer, tmp_path: Path) -> None:
    sha, data = _blob(peer)
    peer.honour_range = False
    cache = Cache(tmp_path / "cache")
    cache.tmp_dir.mkdir(parents=True)
    cache.partial_path(sha).write_bytes(data[:1000])
    _download(peer, cache, sha, len(data))
    assert peer.requests("/blob/")[0].sent == len(data)
    assert cache.blob_path(sha).read_bytes() == data
    assert list(cache.tmp_dir.iterdir()) == []


def test_partial_larger_than_the_blob_is_dropped(peer: Peer, tmp_path: Path) -> None:
    sha, data = _blob(peer)
    cache = Cache(tmp_path / "cache")
    cache.tmp_dir.mkdir(parents=True)
    cache.partial_path(sha).write_bytes(data + b"junk")
    _download(peer, cache, sha, len(data))
    assert [g.headers.get("range") for g in peer.requests("/blob/")] == [None]
    assert cache.blob_path(sha).read_bytes() == data


def test_partial_with_wrong_bytes_is_dropped_and_fetched_from_zero(
    peer: Peer, tmp_path: Path
) -> None:
    sha, data = _blob(peer)
    cache = Cache(tmp_path / "cache")
    cache.tmp_dir.mkdir(parents=True)
    cache.partial_path(sha).write_bytes(b"\0" * (len(data) // 2))
    _download(peer, cache, sha, len(data))
    assert [g.headers.get("range") for g in peer.requests("/blob/")] == [
        f"bytes={len(data) // 2}-",
        None,
    ]
    assert cache.blob_path(sha).read_bytes() == data
    assert list(cache.tmp_dir.iterdir()) == []


def test_interrupted_download_keeps_its_partial_and_the_next_pull_resumes(
    peer: Peer, tmp_path: Path
) -> None:
    sha, data = _blob(peer)
    cache = Cache(tmp_path / "cache")
    peer.cut_after = 2**20 + 7
    with pytest.raises(Exception):  # noqa: B017 - a transport failure, typed by the client
        _download(peer, cache, sha, len(data))
    assert cache.partial_path(sha).stat().st_size == 2**20 + 7
    assert not cache.blob_path(sha).exists()
    peer.cut_after = None
    _download(peer, cache, sha, len(data))
    assert peer.requests("/blob/")[-1].headers.get("range") == f"bytes={2**20 + 7}-"
    assert cache.blob_path(sha).read_bytes() == data


# ------------------------------------------------------- item 4: missing store objects
def test_store_404_names_the_file_and_version_without_xml(peer: Peer, tmp_path: Path) -> None:
    missing_sha = "ab" * 32
    peer.script["/v1/resolve/"] = [
        Answer.json(
            {
                "ref": "default/medical-v3",
                "namespace": "default",
                "name": "medical",
                "version": 3,
                "digest": "sha256:" + "cd" * 32,
                "files": [
                    {
                        "path": "adapter_model.safetensors",
                        "size": 10,
                        "sha256": missing_sha,
                        "url": f"{peer.url}/blob/{missing_sha}?X-Amz-Signature=secret",
                    }
                ],
            }
        )
    ]
    with make_registry_at(peer.url, tmp_path) as registry, pytest.raises(FilesMissingError) as info:
        registry.pull("medical-v3")
    message = str(info.value)
    assert "adapter_model.safetensors" in message and "default/medical-v3" in message
    assert "NoSuchKey" in message
    assert "<" not in message and "secret" not in message
    assert info.value.missing == ["adapter_model.safetensors"]
    assert not any((tmp_path / "cache" / "snapshots").glob("*"))


def test_resolve_409_files_missing_is_a_typed_error(peer: Peer, tmp_path: Path) -> None:
    peer.script["/v1/resolve/"] = [
        Answer.error(
            409,
            "files_missing",
            "default/medical-v1 has files missing from the store: adapter_model.safetensors",
            missing=["adapter_model.safetensors"],
        )
    ]
    with make_registry_at(peer.url, tmp_path) as registry, pytest.raises(FilesMissingError) as info:
        registry.pull("medical-v1")
    assert info.value.missing == ["adapter_model.safetensors"]
    assert info.value.code == "files_missing"
    assert "adapter_model.safetensors" in str(info.value)


def make_registry_at(url: str, tmp_path: Path):
    from loreg.client import Registry

    return Registry(url, token="t", cache_dir=tmp_path / "cache", progress=False)


# ------------------------------------------------------------------ item 7: disk full
@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str = "1m") -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size}",
            f"loreg-test-{uuid.uuid4().hex[:6]}",
            str(folder),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(reason=f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_disk_is_one_line_naming_the_cache_and_bytes_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "publisher") as publisher:
        publisher.push(make_adapter_dir(tmp_path / "big", weight_bytes=3 * 2**20), "big")
    with tiny_tmpfs(tmp_path / "small") as small:
        cache_dir = small / "cache"
        with make_registry(fake, cache_dir) as registry, pytest.raises(DiskFullError) as info:
            registry.pull("big")
        message = str(info.value)
        assert str(cache_dir) in message
        assert "3.0 MiB" in message and "No space left" not in message.split(":")[0]
        assert "\n" not in message
        leftovers = [p for p in cache_dir.rglob("*") if p.is_file()]
        assert not any(p.name.endswith(".incomplete") for p in leftovers), leftovers
        assert not any((cache_dir / "blobs").glob("*")) or all(
            p.stat().st_size < 2**20 for p in (cache_dir / "blobs").iterdir()
        )

        def factory(args):
            return make_registry(fake, cache_dir)

        code = cli.main(["pull", "big"], registry_factory=factory)
        out, err = capsys.readouterr()
        assert code == DiskFullError.exit_code
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(cache_dir) in lines[0]
        assert "a bug in loreg" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_enospc_at_the_write_call_becomes_disk_full_and_drops_the_partial(
    peer: Peer, tmp_path: Path
) -> None:
    sha, data = _blob(peer)
    cache = Cache(tmp_path / "cache")
    cache.tmp_dir.mkdir(parents=True)
    # the partial's name leads to /dev/full: every write answers ENOSPC
    os.symlink("/dev/full", cache.partial_path(sha))
    with pytest.raises(DiskFullError, match=str(cache.root)):
        _download(peer, cache, sha, len(data))
    assert not os.path.lexists(cache.partial_path(sha))
    assert not cache.blob_path(sha).exists()


def test_httpx_transport_path_resumes_too(tmp_path: Path) -> None:
    """With a custom transport (proxies, tests) the httpx path sends Range as well."""
    data = random.Random(3).randbytes(100_000)
    sha = hashlib.sha256(data).hexdigest()
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("range"))
        start = int(request.headers["range"][6:-1]) if "range" in request.headers else 0
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        return httpx.Response(206 if start else 200, content=data[start:], headers=headers)

    cache = Cache(tmp_path / "cache")
    cache.tmp_dir.mkdir(parents=True)
    cache.partial_path(sha).write_bytes(data[:40_000])
    api = ApiClient("http://registry.test", "t")
    transfers = Transfers(
        api, timeout=default_timeout(30), retries=1, transport=httpx.MockTransport(handler)
    )
    transfers.download([BlobTarget(sha, len(data), "http://s3.test/x", "w")], cache, concurrency=1)
    assert seen == ["bytes=40000-"]
    assert cache.blob_path(sha).read_bytes() == data
