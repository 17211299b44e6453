"""The SDK end to end, in-process, on both backends (SQLite + local, Postgres + S3).

The server runs with a 5 MiB multipart threshold and part size, so a 12 MiB
file takes the multipart route on S3 (three presigned part PUTs). Requests are
counted with a transport wrapper passed to ``Registry(transport=...)``.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import threading
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import torch

import loreg
from loreg.errors import NotFoundError, PermissionDeniedError, ValidationFailedError
from tests.support.publish import random_safetensors
from tests.support.tiny import byte_ids, make_lora, tiny_llama

pytestmark = pytest.mark.integration

MiB = 2**20
PART_SIZE = 5 * MiB
BIG_SIZE = 12 * MiB
PROMPT = "the patient reports"


@pytest.fixture
def registry_settings_overrides() -> dict:
    """Multipart from 5 MiB with 5 MiB parts (the S3 minimum), so tests stay small."""
    return {"multipart_threshold_bytes": PART_SIZE, "multipart_part_size_bytes": PART_SIZE}


class CountingTransport(httpx.BaseTransport):
    """An HTTP transport that records every request it sends (thread-safe)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def sdk(server, cache: Path, token: str | None = None, transport=None) -> loreg.Registry:
    """An SDK client on the test server (admin token unless ``token`` is given)."""
    return loreg.Registry(
        url=server.url,
        token=token if token is not None else server.admin_token,
        cache_dir=cache,
        progress=False,
        transport=transport,
    )


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links followed) as bytes, by relative POSIX path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bundle_dir(adapter_dir, tmp_path) -> Path:
    """The tiny adapter plus ``assets/big.safetensors`` (12 MiB, seeded random bytes)."""
    folder = tmp_path / "bundle"
    shutil.copytree(adapter_dir, folder)
    (folder / "assets").mkdir()
    (folder / "assets" / "big.safetensors").write_bytes(random_safetensors(BIG_SIZE, seed=12))
    return folder


def test_push_multipart_pull_cold_and_warm_alias_and_unknown_ref(
    registry_server, bundle_dir, tmp_path
):
    source = folder_files(bundle_dir)
    big_sha = sha(source["assets/big.safetensors"])
    pushing = CountingTransport()
    with sdk(registry_server, tmp_path / "push-cache", transport=pushing) as reg:
        result = reg.push(bundle_dir, "bundle", description="adapter + assets")
    assert (result.ref, result.version, result.created) == ("default/bundle-v1", 1, True)
    assert sorted(result.uploaded) == sorted(source)
    assert result.bytes_uploaded == sum(len(b) for b in source.values())

    big_puts = [r for r in pushing.requests if r.method == "PUT" and big_sha in r.url.path]
    if registry_server.backend == "postgres_s3":
        parts = sorted(int(parse_qs(r.url.query.decode())["partNumber"][0]) for r in big_puts)
        assert parts == list(range(1, math.ceil(BIG_SIZE / PART_SIZE) + 1))
    else:  # the local store: one API upload of the whole blob
        assert len(big_puts) == 1 and big_puts[0].url.path.startswith("/v1/uploads/")

    # cold pull into an empty cache (the SDK's own network path)
    cache = tmp_path / "pull-cache"
    with sdk(registry_server, cache) as reg:
        path = reg.pull("bundle-v1")
        resolved = reg.resolve("bundle-v1")
    assert folder_files(path) == source
    assert {f["path"]: f["sha256"] for f in resolved["files"]} == {
        p: sha(b) for p, b in source.items()
    }

    # warm pull: the same snapshot after exactly one request (the resolve)
    warm = CountingTransport()
    with sdk(registry_server, cache, transport=warm) as reg:
        assert reg.pull("bundle-v1") == path
        assert [(r.method, r.url.path) for r in warm.requests] == [("GET", "/v1/resolve/bundle-v1")]

        # aliases set with the SDK resolve, also after a newer version appears
        assert reg.set_alias("bundle-v1", "prod")["version"] == 1
        (bundle_dir / "README.md").write_text("v2 notes\n")
        assert reg.push(bundle_dir, "bundle").version == 2
        assert reg.resolve("bundle@prod")["version"] == 1
        assert reg.resolve("default/bundle@prod")["ref"] == "default/bundle-v1"
        assert reg.resolve("bundle")["version"] == 2
        assert reg.pull("bundle@prod") == path

        with pytest.raises(NotFoundError):
            reg.pull("no-such-adapter")
        with pytest.raises(NotFoundError):
            reg.resolve("bundle-v9")
        with pytest.raises(NotFoundError):
            reg.resolve("bundle@staging")


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(byte_ids(PROMPT)).logits


def test_load_two_adapters_switch_and_unload(registry_server, tmp_path):
    expected = {}
    for name, seed, r, targets in (
        ("alpha", 11, 4, ("q_proj", "v_proj")),
        ("beta", 12, 8, ("k_proj", "o_proj")),
    ):
        trained = make_lora(tiny_llama(seed=0), seed=seed, r=r, targets=targets)
        trained.save_pretrained(tmp_path / name)
        expected[name] = logits(trained)
    base_logits = logits(tiny_llama(seed=0))
    assert not torch.allclose(expected["alpha"], base_logits, atol=1e-3)
    assert not torch.allclose(expected["alpha"], expected["beta"], atol=1e-3)

    with sdk(registry_server, tmp_path / "push-cache") as reg:
        reg.push(tmp_path / "alpha", "alpha")
        reg.push(tmp_path / "beta", "beta")

    with sdk(registry_server, tmp_path / "load-cache") as reg:
        model = reg.load(tiny_llama(seed=0), "alpha-v1")
        torch.testing.assert_close(logits(model), expected["alpha"], atol=1e-6, rtol=0)

        model = reg.load(model, "beta")
        assert set(model.peft_config) == {reg.adapter_name("alpha-v1"), reg.adapter_name("beta")}
        torch.testing.assert_close(logits(model), expected["beta"], atol=1e-6, rtol=0)

        model = reg.use(model, "alpha-v1")
        torch.testing.assert_close(logits(model), expected["alpha"], atol=1e-6, rtol=0)
        model = reg.use(model, "default/beta-v1")
        torch.testing.assert_close(logits(model), expected["beta"], atol=1e-6, rtol=0)

        model = reg.unload(model, "beta-v1")
        assert list(model.peft_config) == [reg.adapter_name("alpha-v1")]
        torch.testing.assert_close(logits(model), expected["alpha"], atol=1e-6, rtol=0)

        with pytest.raises(NotFoundError):
            reg.use(model, "beta-v1")
        base = reg.unload(model, "alpha-v1")
        torch.testing.assert_close(logits(base), base_logits, atol=1e-6, rtol=0)


def test_read_token_pulls_but_cannot_push_and_pickle_is_refused(
    registry_server, adapter_dir, adapter_files, tmp_path
):
    with sdk(registry_server, tmp_path / "admin-cache") as admin:
        admin.push(adapter_dir, "shared")
        reader_token = admin.create_token("reader", [("default", "read")])["token"]

        with sdk(registry_server, tmp_path / "reader-cache", token=reader_token) as reader:
            assert folder_files(reader.pull("shared-v1")) == adapter_files
            with pytest.raises(PermissionDeniedError):
                reader.push(adapter_dir, "shared")
            with pytest.raises(PermissionDeniedError):
                reader.push(adapter_dir, "by-reader")
        assert [v["version"] for v in admin.versions("shared")] == [1]
        with pytest.raises(NotFoundError):
            admin.resolve("by-reader")

        pickled = tmp_path / "pickled"
        shutil.copytree(adapter_dir, pickled)
        (pickled / "model.bin").write_bytes(b"\x80\x04K\x01.")  # pickle.dumps(1)
        transport = CountingTransport()
        with (
            sdk(registry_server, tmp_path / "c", transport=transport) as reg,
            pytest.raises(ValidationFailedError, match="pickle"),
        ):
            reg.push(pickled, "pickled")
        assert transport.requests == []  # refused before anything was sent
        with pytest.raises(NotFoundError):
            admin.resolve("pickled")
        assert "pickled" not in [a["name"] for a in admin.list()]
