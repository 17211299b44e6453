"""The client cache: layout, atomic pulls, integrity checks, warm and offline pulls."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import httpx
import pytest

from loreg.cache import Cache, safe_relpath, server_key
from loreg.errors import IntegrityError, OfflineCacheMissError, ServerError
from loreg.transfer import write_verified
from tests.support.fake_registry import API, FakeRegistry, make_adapter_dir, make_registry


@pytest.fixture(autouse=True)
def _fast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOREG_RETRIES", "1")
    monkeypatch.delenv("LOREG_OFFLINE", raising=False)


@pytest.fixture
def published(tmp_path: Path) -> FakeRegistry:
    """A fake registry holding default/medical v1 and v2 (v2 aliased prod)."""
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "publisher-cache") as publisher:
        publisher.push(make_adapter_dir(tmp_path / "a1", seed=1, weight_bytes=300_000), "medical")
        publisher.push(make_adapter_dir(tmp_path / "a2", seed=2, weight_bytes=5000), "medical")
        publisher.set_alias("medical-v2", "prod")
    fake.seen.clear()
    return fake


def _tree(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _source_bytes(tmp_path: Path, seed: int) -> dict[str, bytes]:
    folder = tmp_path / f"a{seed}"
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_cold_pull_builds_blobs_and_relative_symlink_snapshot(published, tmp_path) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        path = registry.pull("medical-v1")
        resolved = registry.resolve("medical-v1")
    assert path == cache_dir / "snapshots" / resolved["digest"].removeprefix("sha256:")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == _source_bytes(tmp_path, 1)
    for f in resolved["files"]:
        link = path / f["path"]
        assert link.is_symlink()
        target = os.readlink(link)
        assert not os.path.isabs(target)
        assert (link.parent / target).resolve() == (cache_dir / "blobs" / f["sha256"]).resolve()
        blob = (cache_dir / "blobs" / f["sha256"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == f["sha256"]
    manifest = json.loads((cache_dir / "manifests" / f"{path.name}.json").read_text())
    assert all("url" not in f for f in manifest["files"])
    ref_file = cache_dir / "refs" / server_key(API) / "default" / "medical" / "v1"
    assert ref_file.read_text() == resolved["digest"]
    assert _tree(cache_dir / "tmp") == []


def test_warm_pull_is_exactly_one_request(published, tmp_path) -> None:
    with make_registry(published, tmp_path / "cache") as registry:
        first = registry.pull("medical@prod")
        published.seen.clear()
        second = registry.pull("medical@prod")
    assert second == first
    assert [(s.method, s.url) for s in published.seen] == [
        ("GET", f"{API}/v1/resolve/medical@prod")
    ]


def test_blobs_shared_between_versions_are_downloaded_once(published, tmp_path) -> None:
    folder = make_adapter_dir(tmp_path / "a3", seed=1, weight_bytes=300_000)  # same as v1...
    (folder / "README.md").write_text("only the card changed\n")  # ...except the card
    with make_registry(published, tmp_path / "cache") as registry:
        assert registry.push(folder, "medical").version == 3
        registry.pull("medical-v1")
        published.seen.clear()
        path = registry.pull("medical-v3")
    assert len(published.requests("GET", "/v1/blobs/")) == 1
    assert (path / "README.md").read_text() == "only the card changed\n"


def test_offline_pull_uses_no_network(published, tmp_path, monkeypatch) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        pulled = {ref: registry.pull(ref) for ref in ("medical", "medical-v1", "medical@prod")}
        digest_v1 = registry.resolve("medical-v1")["digest"]

    def no_network(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"offline mode made a request: {request.url}")

    monkeypatch.setenv("LOREG_OFFLINE", "1")
    offline = make_registry(FakeRegistry(), cache_dir)
    offline._api._http._transport = httpx.MockTransport(no_network)
    with offline:
        assert offline.offline
        for ref, path in pulled.items():
            assert offline.pull(ref) == path
        assert offline.pull("default/medical-v1") == pulled["medical-v1"]
        assert offline.pull(f"medical@{digest_v1}") == pulled["medical-v1"]
        resolved = offline.resolve("medical:2")
        assert resolved["ref"] == "default/medical-v2"
        assert resolved["digest"] != digest_v1
        assert all("url" not in f for f in resolved["files"])
        shown = offline.show("medical-v1")
        assert shown["adapter"] is None and shown["digest"] == digest_v1
        with pytest.raises(OfflineCacheMissError, match="LOREG_OFFLINE"):
            offline.pull("medical-v3")
        with pytest.raises(OfflineCacheMissError):
            offline.pull("other")


def test_offline_pull_with_deleted_blob_is_a_cache_miss(published, tmp_path) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        registry.pull("medical-v2")
    for blob in (cache_dir / "blobs").iterdir():
        blob.unlink()
    offline = make_registry(published, cache_dir, offline=True)
    with offline, pytest.raises(OfflineCacheMissError, match="missing"):
        offline.pull("medical-v2")


def test_incomplete_snapshot_is_repaired_with_only_missing_blobs(published, tmp_path) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        path = registry.pull("medical-v1")
        victim = next(iter(sorted((cache_dir / "blobs").iterdir())))
        victim.unlink()
        published.seen.clear()
        again = registry.pull("medical-v1")
    assert again == path
    assert len(published.requests("GET", "/v1/blobs/")) == 1
    assert {p.name: p.read_bytes() for p in path.iterdir()} == _source_bytes(tmp_path, 1)


def _interrupt_blob_download(fake: FakeRegistry, after: int) -> None:
    """Make every blob download send ``after`` bytes, then fail like a dropped connection."""

    class Dropping(httpx.SyncByteStream):
        def __init__(self, data: bytes):
            self.data = data

        def __iter__(self):
            yield self.data[:after]
            raise httpx.ReadError("connection reset by peer")

    def hook(request: httpx.Request) -> httpx.Response:
        sha = request.url.path.rsplit("/", 1)[1]
        data = fake.blobs[sha]
        return httpx.Response(
            200, stream=Dropping(data), headers={"Content-Length": str(len(data))}
        )

    fake.hook("GET", r"/v1/blobs/", hook)


def test_interrupted_download_leaves_nothing_visible(published, tmp_path) -> None:
    cache_dir = tmp_path / "cache"
    _interrupt_blob_download(published, after=1000)
    with make_registry(published, cache_dir) as registry, pytest.raises(ServerError):
        registry.pull("medical-v1")
    assert _tree(cache_dir / "blobs") == []
    assert _tree(cache_dir / "snapshots") == []
    assert _tree(cache_dir / "refs") == []
    assert _tree(cache_dir / "manifests") == []
    # only the resumable partial files remain, each with the bytes that arrived
    partials = sorted((cache_dir / "tmp").iterdir())
    assert partials and all(p.name.endswith(".incomplete") for p in partials)
    for partial in partials:
        data = published.blobs[partial.name.removesuffix(".incomplete")]
        assert partial.read_bytes() == data[: min(1000, len(data))]


def test_dropped_connection_is_retried(published, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOREG_RETRIES", "3")
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadError("connection reset by peer", request=request)
        return None

    published.hook("GET", r"/v1/blobs/", flaky)
    with make_registry(published, tmp_path / "cache") as registry:
        registry._transfers.backoff_s = 0
        path = registry.pull("medical-v2")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == _source_bytes(tmp_path, 2)
    assert calls["n"] == 3 + 1  # three blobs, one of them twice


def test_sha_mismatch_raises_integrity_error_and_keeps_nothing(published, tmp_path) -> None:
    cache_dir = tmp_path / "cache"

    def corrupt(request: httpx.Request) -> httpx.Response:
        data = bytearray(published.blobs[request.url.path.rsplit("/", 1)[1]])
        data[0] ^= 0xFF  # same length, different bytes
        return httpx.Response(200, content=bytes(data))

    published.hook("GET", r"/v1/blobs/", corrupt)
    registry = make_registry(published, cache_dir)
    with registry, pytest.raises(IntegrityError, match="sha256"):
        registry.pull("medical-v1")
    assert _tree(cache_dir / "blobs") == []
    assert _tree(cache_dir / "snapshots") == []
    assert _tree(cache_dir / "tmp") == []


def test_unsafe_manifest_path_is_refused_before_writing(published, tmp_path) -> None:
    def evil(request: httpx.Request) -> httpx.Response:
        resolved = published.resolved(published.versions[("default", "medical")][0])
        resolved["files"][0]["path"] = "../../escape.txt"
        return httpx.Response(200, json=resolved)

    published.hook("GET", r"/v1/resolve/", evil)
    cache_dir = tmp_path / "cache"
    registry = make_registry(published, cache_dir)
    with registry, pytest.raises(ServerError, match="unsafe file path"):
        registry.pull("medical-v1")
    assert not cache_dir.exists() or _tree(cache_dir / "blobs") == []
    assert not (tmp_path / "escape.txt").exists()


def test_downloads_from_presigned_urls_send_no_token(published, tmp_path) -> None:
    published.download_via = "s3"
    with make_registry(published, tmp_path / "cache") as registry:
        registry.pull("medical-v1")
    s3 = published.requests("GET", "s3.test")
    api = published.requests("GET", "/v1/resolve/")
    assert s3 and not any(s.authorized for s in s3)
    assert api and all(s.authorized for s in api)


def test_concurrent_pulls_of_one_version_share_the_cache(published, tmp_path) -> None:
    cache_dir = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            with make_registry(published, cache_dir) as registry:
                results.append(registry.pull("medical-v1"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert {p.name: p.read_bytes() for p in results[0].iterdir()} == _source_bytes(tmp_path, 1)
    assert [p.name for p in (cache_dir / "snapshots").iterdir()] == [results[0].name]


def test_snapshot_falls_back_to_links_without_symlinks(published, tmp_path, monkeypatch) -> None:
    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not supported")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    with make_registry(published, tmp_path / "cache") as registry:
        path = registry.pull("medical-v2")
    assert not any(p.is_symlink() for p in path.iterdir())
    assert {p.name: p.read_bytes() for p in path.iterdir()} == _source_bytes(tmp_path, 2)


def test_build_snapshot_replaces_an_incomplete_folder(tmp_path) -> None:
    cache = Cache(tmp_path)
    data = b"hello"
    sha = hashlib.sha256(data).hexdigest()
    temp = cache.new_temp_path(sha)
    temp.write_bytes(data)
    cache.commit_blob(temp, sha)
    digest = "sha256:" + "ab" * 32
    files = [{"path": "sub/a.txt", "size": 5, "sha256": sha}]
    stale = cache.snapshot_path(digest)
    stale.mkdir(parents=True)
    (stale / "leftover").write_text("x")
    assert not cache.snapshot_ready(digest, files)
    path = cache.build_snapshot(digest, files)
    assert cache.snapshot_ready(digest, files)
    assert (path / "sub" / "a.txt").read_bytes() == data
    assert not (path / "leftover").exists()
    assert [p.name for p in cache.snapshots_dir.iterdir()] == [path.name]


def test_write_verified_checks_length(tmp_path) -> None:
    dest = tmp_path / "out"
    chunks = [b"a" * 10, b"b" * 10]
    digest = write_verified(iter(chunks), dest, expected_size=20)
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert dest.read_bytes() == b"".join(chunks)
    with pytest.raises(IntegrityError, match="more than"):
        write_verified(iter(chunks), tmp_path / "x", expected_size=15)
    with pytest.raises(IntegrityError, match="received 20 bytes"):
        write_verified(iter(chunks), tmp_path / "y", expected_size=25)


def test_write_verified_hashes_large_streams_correctly(tmp_path) -> None:
    block = os.urandom(1 << 20)
    chunks = [block] * 20 + [block[:12345]]  # crosses several 8 MiB hand-offs
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    size = sum(len(c) for c in chunks)
    assert write_verified(iter(chunks), tmp_path / "big", expected_size=size) == expected
    assert (tmp_path / "big").stat().st_size == size


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a//b", "a/./b", "", "a\\b", "a/.."])
def test_safe_relpath_rejects_escapes(path: str) -> None:
    with pytest.raises(ServerError):
        safe_relpath(path)


def test_server_key_is_one_safe_folder_name() -> None:
    assert server_key("http://127.0.0.1:8080") == "127.0.0.1_8080"
    assert server_key("https://reg.example.com/base/") == "reg.example.com_443_base"
    assert "/" not in server_key("http://h:1/a/b")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_write_failure_is_raised_without_deadlock() -> None:
    block = b"x" * (9 << 20)  # more than one hand-off block
    with pytest.raises(OSError):
        write_verified(iter([block] * 4), Path("/dev/full"), expected_size=len(block) * 4)


def test_offline_latest_falls_back_to_newest_pulled_version(published, tmp_path) -> None:
    cache_dir = tmp_path / "cache"
    with make_registry(published, cache_dir) as registry:
        v1 = registry.pull("medical-v1")
        v2 = registry.pull("default/medical-v2")
    with make_registry(published, cache_dir, offline=True) as offline:
        published.seen.clear()
        assert offline.pull("medical") == v1  # bare pulls know only v1
        assert offline.pull("default/medical") == v2  # the namespace has v1 and v2
        assert published.seen == []
