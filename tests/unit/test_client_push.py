"""Registry.push and the other write calls against the in-memory fake registry."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx
import pytest

from loreg import constants
from loreg.client import collect_files, normalize_grants, pickle_refusal_message
from loreg.errors import (
    InvalidNameError,
    LoregError,
    NotFoundError,
    ServerError,
    ValidationFailedError,
)
from loreg.transfer import read_range
from tests.support.fake_registry import FakeRegistry, make_adapter_dir, make_registry


@pytest.fixture(autouse=True)
def _fast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOREG_RETRIES", "1")
    monkeypatch.delenv("LOREG_OFFLINE", raising=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("method", ["api", "put", "multipart"])
def test_push_stores_every_blob_and_creates_version_1(method: str, tmp_path: Path) -> None:
    fake = FakeRegistry(upload_method=method, part_size=1000)
    folder = make_adapter_dir(tmp_path / "adapter", weight_bytes=4321)  # 5 parts, last short
    with make_registry(fake, tmp_path / "cache") as registry:
        result = registry.push(folder, "medical", base_model="tiny-llama", description="d")
    assert result.created and result.version == 1
    assert result.ref == "default/medical-v1"
    assert sorted(result.uploaded) == sorted(p.name for p in folder.iterdir())
    assert result.reused == []
    assert result.bytes_uploaded == sum(p.stat().st_size for p in folder.iterdir())
    for p in folder.iterdir():
        assert fake.blobs[_sha(p)] == p.read_bytes()
    presigned = fake.requests("PUT", "s3.test")
    assert not any(s.authorized for s in presigned)
    assert all(s.authorized for s in fake.requests(contains="/v1/"))
    if method == "multipart":
        assert len(fake.requests("PUT", "/mp/")) == 5 + 1 + 1  # parts of the 3 files


def test_identical_push_returns_existing_version_and_sends_nothing(tmp_path: Path) -> None:
    fake = FakeRegistry()
    folder = make_adapter_dir(tmp_path / "adapter")
    with make_registry(fake, tmp_path / "cache") as registry:
        first = registry.push(folder, "medical")
        fake.seen.clear()
        again = registry.push(folder, "medical")
    assert not again.created
    assert (again.version, again.digest) == (first.version, first.digest)
    assert again.uploaded == [] and again.bytes_uploaded == 0
    assert sorted(again.reused) == sorted(p.name for p in folder.iterdir())
    assert fake.requests("PUT") == []


def test_changed_file_sends_only_that_blob(tmp_path: Path) -> None:
    fake = FakeRegistry()
    folder = make_adapter_dir(tmp_path / "adapter")
    with make_registry(fake, tmp_path / "cache") as registry:
        registry.push(folder, "medical")
        (folder / "README.md").write_text("new card\n")
        second = registry.push(folder, "medical")
    assert second.created and second.version == 2
    assert second.uploaded == ["README.md"]
    assert second.bytes_uploaded == len("new card\n")


def _broken(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": {"code": "internal", "message": "disk full"}})


def test_interrupted_push_resumes_with_only_missing_blobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOREG_RETRY_MAX_S", "0")  # the 503 is final here, not retried
    fake = FakeRegistry()
    folder = make_adapter_dir(tmp_path / "adapter")
    fake.hook("PUT", _sha(folder / "adapter_model.safetensors"), _broken)
    with make_registry(fake, tmp_path / "cache") as registry:
        with pytest.raises(ServerError, match="disk full"):
            registry.push(folder, "medical")
        assert fake.versions == {}  # nothing visible
        with pytest.raises(NotFoundError):
            registry.resolve("medical")
        missing = sorted(p.name for p in folder.iterdir() if _sha(p) not in fake.blobs)
        assert "adapter_model.safetensors" in missing
        fake.hooks.clear()
        fake.seen.clear()
        result = registry.push(folder, "medical")
    assert result.created and result.version == 1
    assert result.uploaded == missing
    assert len(fake.requests("PUT")) == len(missing)


def test_push_interrupted_before_commit_resends_nothing(tmp_path: Path) -> None:
    fake = FakeRegistry()
    folder = make_adapter_dir(tmp_path / "adapter")
    fake.hook("POST", r"/commit$", _broken)
    with make_registry(fake, tmp_path / "cache") as registry:
        with pytest.raises(ServerError):
            registry.push(folder, "medical")
        assert fake.versions == {}
        fake.hooks.clear()
        fake.seen.clear()
        result = registry.push(folder, "medical")
    assert result.created and result.uploaded == []
    assert fake.requests("PUT") == []


def test_transient_5xx_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOREG_RETRIES", "3")
    fake = FakeRegistry(upload_method="put")
    failures = {"left": 2}

    def flaky(request: httpx.Request) -> httpx.Response | None:
        if failures["left"]:
            failures["left"] -= 1
            return httpx.Response(500, text="oops")
        return None

    fake.hook("PUT", "s3.test", flaky)
    with make_registry(fake, tmp_path / "cache") as registry:
        registry._transfers.backoff_s = 0
        result = registry.push(make_adapter_dir(tmp_path / "adapter"), "medical")
    assert result.created
    assert failures["left"] == 0


def test_client_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOREG_RETRIES", "5")
    fake = FakeRegistry(upload_method="put")
    fake.hook("PUT", "s3.test", lambda r: httpx.Response(403, text="<Error>Expired</Error>"))
    with make_registry(fake, tmp_path / "cache") as registry, pytest.raises(LoregError):
        registry.push(make_adapter_dir(tmp_path / "adapter"), "medical")
    assert len(fake.requests("PUT", "s3.test")) <= 3  # one try per blob, no retries


def test_pickle_files_are_refused_locally(tmp_path: Path) -> None:
    fake = FakeRegistry()
    folder = make_adapter_dir(tmp_path / "adapter")
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    registry = make_registry(fake, tmp_path / "cache")
    with registry, pytest.raises(ValidationFailedError, match="adapter_model.bin") as info:
        registry.push(folder, "medical")
    assert info.value.code == "pickle_refused"
    assert "safetensors" in str(info.value)
    assert fake.seen == []


def test_hidden_files_and_folders_are_ignored(tmp_path: Path) -> None:
    folder = make_adapter_dir(tmp_path / "adapter")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    (folder / ".DS_Store").write_text("x")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.json").write_text("{}")
    paths = [f.path for f in collect_files(folder)]
    assert paths == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer/vocab.json",
    ]


def test_a_pulled_snapshot_can_be_pushed_again(tmp_path: Path) -> None:
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "cache") as registry:
        registry.push(make_adapter_dir(tmp_path / "adapter"), "medical")
        snapshot = registry.pull("medical")
        copy = registry.push(snapshot, "copy")
    assert copy.created and copy.uploaded == []  # symlinks followed; all blobs known


@pytest.mark.parametrize(
    ("name", "error"),
    [("Medical", InvalidNameError), ("medical-v2", InvalidNameError), ("a/b", InvalidNameError)],
)
def test_invalid_names_are_refused_before_any_request(tmp_path, name, error) -> None:
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "cache") as registry, pytest.raises(error):
        registry.push(make_adapter_dir(tmp_path / "adapter"), name)
    assert fake.seen == []


def test_folder_without_adapter_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "not-an-adapter"
    folder.mkdir()
    (folder / "notes.txt").write_text("hi")
    with make_registry(FakeRegistry(), tmp_path / "cache") as registry:
        with pytest.raises(ValidationFailedError, match="adapter_model.safetensors"):
            registry.push(folder, "medical")
        with pytest.raises(ValidationFailedError, match="not a folder"):
            registry.push(tmp_path / "missing", "medical")


def test_parents_and_metadata_are_sent(tmp_path: Path) -> None:
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "cache") as registry:
        registry.push(make_adapter_dir(tmp_path / "a"), "base-adapter")
        child = registry.push(
            make_adapter_dir(tmp_path / "b", seed=5),
            "child",
            namespace="default",
            metadata={"team": "x"},
            parents=["base-adapter-v1"],
        )
    body = next(iter(fake.versions[("default", "child")]))
    assert body["lineage"] == [
        {"relation": "continued_from", "parent": {"kind": "adapter", "ref": "base-adapter-v1"}}
    ]
    assert child.resolved["lineage"] == body["lineage"]


def test_aliases_tokens_and_catalog(tmp_path: Path) -> None:
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "cache") as registry:
        registry.push(make_adapter_dir(tmp_path / "a"), "medical")
        registry.push(make_adapter_dir(tmp_path / "b", seed=3), "medical")
        moved = registry.set_alias("medical-v1", "prod")
        assert (moved["version"], moved["previous"]) == (1, None)
        assert registry.resolve("medical@prod")["version"] == 1
        moved = registry.set_alias("medical", "prod")
        assert (moved["version"], moved["previous"]) == (2, 1)
        removed = registry.remove_alias("medical", "prod")
        assert removed == {
            "namespace": "default",
            "name": "medical",
            "alias": "prod",
            "version": None,
            "previous": 2,
        }
        with pytest.raises(InvalidNameError):
            registry.set_alias("medical", "v3")
        listed = registry.list()
        assert [(a["name"], a["latest_version"]) for a in listed] == [("medical", 2)]
        assert list(registry.list("other")) == []
        with pytest.raises(ValidationFailedError, match="name, updated"):
            registry.list(sort="size")  # refused before any request
        shown = registry.show("medical")
        assert shown["adapter"]["versions"] == 2
        recent = shown["adapter"]["recent_versions"]["items"]
        assert [v["version"] for v in recent] == [2, 1]  # newest first
        assert [v["version"] for v in registry.versions("medical")] == [2, 1]
        assert all("url" not in f for f in shown["files"])
        token = registry.create_token("ci", [("default", "write"), "*:read"])
    body = [s for s in fake.seen if s.url.endswith("/v1/tokens")]
    assert token["token"] == "lrg_secret" and len(body) == 1
    assert token["grants"] == [
        {"namespace": "default", "scope": "write"},
        {"namespace": "*", "scope": "read"},
    ]


@pytest.mark.parametrize("grant", [("acme", "owner"), "acme", ("", "read"), {"scope": "read"}])
def test_bad_grants_are_refused(grant) -> None:
    with pytest.raises(ValidationFailedError, match="grant"):
        normalize_grants([grant])


def test_offline_mode_refuses_writes(tmp_path: Path) -> None:
    fake = FakeRegistry()
    with make_registry(fake, tmp_path / "cache", offline=True) as registry:
        with pytest.raises(LoregError, match="offline"):
            registry.push(make_adapter_dir(tmp_path / "a"), "medical")
        with pytest.raises(LoregError, match="offline"):
            registry.list()
    assert fake.seen == []


def test_read_range_streams_the_requested_slice(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    path = tmp_path / "f"
    path.write_bytes(data)
    counted: list[int] = []
    out = b"".join(read_range(path, 1000, 5000, on_bytes=counted.append))
    assert out == data[1000:6000]
    assert sum(counted) == 5000
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)


@pytest.mark.parametrize("name", ["w.bin", "sub/x.PT", "a.pkl.gz", "m.npz", "ok.safetensors"])
def test_local_pickle_check_matches_the_registry(name: str) -> None:
    paths = pytest.importorskip("registry.validation.paths")
    assert constants.is_pickle_path(name) == paths.is_pickle_path(name)
    assert tuple(constants.PICKLE_SUFFIXES) == tuple(paths.PICKLE_SUFFIXES)
    if paths.is_pickle_path(name):
        with pytest.raises(Exception) as server:
            paths.refuse_pickle(name)
        assert pickle_refusal_message(name) == server.value.message
