"""The in-memory registry fake (tests/support/fake_registry.py) follows the HTTP contract."""

from __future__ import annotations

import hashlib

import httpx

from loreg.manifest import manifest_digest
from tests.support.fake_registry import API, FakeRegistry


def _client(fake: FakeRegistry) -> httpx.Client:
    return httpx.Client(base_url=API, transport=fake.transport())


def test_fake_publish_then_resolve_follows_the_contract() -> None:
    fake = FakeRegistry()
    config = b'{"r": 2, "peft_type": "LORA"}'
    weights = b"tensor bytes"
    files = [
        {"path": "adapter_config.json", "size": len(config), "sha256": _sha(config)},
        {"path": "adapter_model.safetensors", "size": len(weights), "sha256": _sha(weights)},
    ]
    with _client(fake) as http:
        up = http.post("/v1/uploads", json={"kind": "adapter", "name": "m", "files": files})
        assert up.status_code == 201
        body = up.json()
        assert {b["sha256"] for b in body["blobs"]} == {f["sha256"] for f in files}
        early = http.post(f"/v1/uploads/{body['upload_id']}/commit", json={})
        assert early.status_code == 409
        assert early.json()["error"]["code"] == "missing_blob"
        for data in (config, weights):
            url = f"/v1/uploads/{body['upload_id']}/blobs/{_sha(data)}"
            assert http.put(url, content=data, headers={"Authorization": "Bearer t"}).is_success
        done = http.post(f"/v1/uploads/{body['upload_id']}/commit", json={})
        assert done.status_code == 201
        resolved = http.get("/v1/resolve/m-v1").json()
    assert resolved["ref"] == "default/m-v1"
    assert resolved["digest"] == manifest_digest(
        [(f["path"], f["sha256"], f["size"]) for f in files], {"r": 2, "peft_type": "LORA"}
    )
    assert {f["path"] for f in resolved["files"]} == {f["path"] for f in files}


def test_fake_rejects_wrong_bytes_and_unknown_refs() -> None:
    fake = FakeRegistry()
    data = b"abc"
    files = [{"path": "adapter_config.json", "size": 3, "sha256": _sha(data)}]
    with _client(fake) as http:
        upload_id = http.post("/v1/uploads", json={"name": "m", "files": files}).json()["upload_id"]
        wrong = http.put(
            f"/v1/uploads/{upload_id}/blobs/{_sha(data)}",
            content=b"xyz",
            headers={"Authorization": "Bearer t"},
        )
        assert wrong.status_code == 422
        assert http.get("/v1/resolve/nothing").status_code == 404


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
