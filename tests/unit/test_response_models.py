"""Every route declares its answer as a pydantic model of registry.schemas, and real
answers are exactly what their model describes (no key dropped, added or reordered).

An in-process app on SQLite + the local store (no server, no torch).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
import typing
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter

from registry import schemas
from registry.web.pages.common import WEB_TAG

#: Routes that answer bytes, not JSON, each with the reason; every other route has a model.
RAW_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/v1/blobs/{sha256}"): "the blob's bytes (FileResponse, or a stream from the store)",
}


#: Routes of the Hugging Face Hub protocol (docs/hub-protocol.md): they answer the
#: Hub's JSON shapes, so they have no loreg schema and are left out of OpenAPI.
HUB_PREFIX = "/hf/"


def _api_routes(app: fastapi.FastAPI) -> list[tuple[str, APIRoute]]:
    """(full path, route) of every APIRoute of the app, included routers walked."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:  # FastAPI that copies included routes into app.routes
        return [(r.path, r) for r in app.routes if isinstance(r, APIRoute)]
    return [
        (rc.path, rc.original_route)
        for rc in iter_contexts(app.routes)
        if isinstance(rc.original_route, APIRoute)
    ]


def _models_of(annotation: Any) -> list[type]:
    """The classes a response model names: ``X``, ``list[X]`` or ``Page[X]`` (else empty).

    A parametrized generic (``schemas.Page[X]``) is created in the module that names
    it, so it stands for its origin and its arguments.
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        generic = annotation.__pydantic_generic_metadata__
        if generic["origin"] is not None:
            return [generic["origin"], *[a for a in generic["args"] if isinstance(a, type)]]
        return [annotation]
    if typing.get_origin(annotation) is list:
        return [a for a in typing.get_args(annotation) if isinstance(a, type)]
    return []


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[fastapi.FastAPI]:
    """The API app on a fresh SQLite database."""
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    folder = tmp_path_factory.mktemp("routes")
    ctx, _ = prepare(
        Settings(
            data_dir=folder,
            database_url=f"sqlite:///{folder / 'loreg.db'}",
            secret_key=secrets.token_hex(16),
        )
    )
    try:
        yield create_app(context=ctx)
    finally:
        ctx.engine.dispose()


def test_every_route_declares_a_response_model(app) -> None:
    routes = _api_routes(app)
    assert len(routes) >= 25, [path for path, _ in routes]  # the walk found the routers
    seen_raw = set()
    hub_routes = page_routes = 0
    for path, route in routes:
        if WEB_TAG in (route.tags or []):  # HTML pages (registry/web): no JSON contract
            assert path not in app.openapi()["paths"], f"{path}: pages stay out of OpenAPI"
            page_routes += 1
            continue
        if path.startswith(HUB_PREFIX):  # the Hub's shapes, checked by the stock client
            assert not route.include_in_schema, f"{path}: Hub routes stay out of OpenAPI"
            hub_routes += 1
            continue
        for method in route.methods:
            key = (method, path)
            if key in RAW_ROUTES:
                seen_raw.add(key)
                assert route.response_model is None, key
                cls = route.response_class
                assert isinstance(cls, type) and not issubclass(cls, JSONResponse), key
                continue
            models = _models_of(route.response_model)
            assert models, f"{method} {path}: no response model ({route.response_model})"
            for model in models:
                assert issubclass(model, BaseModel), (key, model)
                assert model.__module__ == schemas.__name__, (key, model)
    assert seen_raw == set(RAW_ROUTES), "a raw route listed here no longer exists"
    assert hub_routes >= 7, "the /hf read routes were not found"
    assert page_routes >= 10, "the web page routes were not found"
    assert not [p for p in app.openapi()["paths"] if p.startswith(HUB_PREFIX)]


# --- real answers -------------------------------------------------------------------

LORA_PREFIX = "base_model.model.model.layers.0.self_attn.q_proj"


def _safetensors(tensors: dict[str, list[int]]) -> bytes:
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * shape[0] * shape[1]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


ADAPTER_FILES = {
    "adapter_config.json": json.dumps(
        {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
    ).encode(),
    "adapter_model.safetensors": _safetensors(
        {f"{LORA_PREFIX}.lora_A.weight": [2, 8], f"{LORA_PREFIX}.lora_B.weight": [8, 2]}
    ),
}
BASE_FILES = {
    "config.json": json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    ).encode(),
    "model.safetensors": _safetensors({"model.layers.0.self_attn.q_proj.weight": [8, 8]}),
}


def _entries(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [
        {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for p, b in files.items()
    ]


def _exact(model: Any, body: Any, exclude_unset: bool = False) -> Any:
    """``body``, checked to come back unchanged from a round trip through ``model``."""
    adapter = TypeAdapter(model)
    again = adapter.dump_python(
        adapter.validate_python(body), mode="json", exclude_unset=exclude_unset
    )
    # json.dumps keeps dict order: equal strings mean the same keys in the same order
    assert json.dumps(again) == json.dumps(body), (model, body)
    return body


@pytest.fixture
def client(tmp_path) -> Iterator[tuple[TestClient, Any]]:
    """(admin client, context) of a fresh in-process registry."""
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    settings = Settings(
        data_dir=tmp_path / "registry",
        database_url=f"sqlite:///{tmp_path / 'registry' / 'loreg.db'}",
        secret_key=secrets.token_hex(16),
    )
    ctx, token = prepare(settings)
    c = TestClient(
        create_app(context=ctx),
        headers={"Authorization": f"Bearer {token}"},
        raise_server_exceptions=False,
    )
    try:
        yield c, ctx
    finally:
        c.close()
        ctx.engine.dispose()


def _publish(c: TestClient, files: dict[str, bytes], **body: Any) -> Any:
    r = c.post("/v1/uploads", json={"files": _entries(files), **body})
    assert r.status_code == 201, r.text
    upload = _exact(schemas.UploadCreated, r.json(), exclude_unset=True)
    by_sha = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    for blob in upload["blobs"]:
        if not blob["present"]:
            sent = c.put(blob["upload"]["url"], content=by_sha[blob["sha256"]])
            assert sent.status_code == 200, sent.text
            _exact(schemas.BlobStored, sent.json())
    r = c.post(f"/v1/uploads/{upload['upload_id']}/commit")
    assert r.status_code == 201, r.text
    return upload, _exact(schemas.CommitResult, r.json())


def test_real_answers_are_exactly_their_models(client) -> None:
    from registry.storage.base import blob_key

    c, ctx = client
    r = c.post("/v1/tokens", json={"name": "ci", "grants": [{"namespace": "*", "scope": "read"}]})
    assert r.status_code == 201, r.text
    _exact(schemas.TokenCreated, r.json())
    r = c.post("/v1/namespaces", json={"name": "team", "private": True})
    assert r.status_code == 201, r.text
    _exact(schemas.NamespaceView, r.json())
    _exact(schemas.Page[schemas.NamespaceView], c.get("/v1/namespaces").json())

    base_upload, base = _publish(c, BASE_FILES, kind="base_model", name="org/tiny", revision="v1")
    assert base["resolved"]["modules"] == {"model.layers.0.self_attn.q_proj": [8, 8]}
    upload, committed = _publish(
        c, ADAPTER_FILES, name="medical", base_model="org/tiny", metadata={"k": [1, 2.5, None]}
    )
    assert committed["created"] is True
    assert all(b["upload"]["method"] == "api" for b in upload["blobs"] if not b["present"])
    # the same files again: every blob present (no "upload" key), sending one is a no-op
    r = c.post("/v1/uploads", json={"files": _entries(ADAPTER_FILES), "name": "other"})
    again = _exact(schemas.UploadCreated, r.json(), exclude_unset=True)
    assert all(b["present"] and "upload" not in b for b in again["blobs"])
    sha = again["blobs"][0]["sha256"]
    r = c.put(f"/v1/uploads/{again['upload_id']}/blobs/{sha}", content=b"")
    assert r.status_code == 200, r.text
    _exact(schemas.BlobStored, r.json())
    r = c.post(f"/v1/uploads/{again['upload_id']}/commit")
    assert r.status_code == 201, r.text
    _exact(schemas.CommitResult, r.json())
    r = c.post(f"/v1/uploads/{base_upload['upload_id']}/commit")
    assert r.status_code == 200, r.text
    assert _exact(schemas.CommitResult, r.json())["created"] is False
    assert c.put("/v1/adapters/default/medical/aliases/prod", json={"version": 1}).is_success

    _exact(schemas.Page[schemas.AdapterSummary], c.get("/v1/adapters").json())
    detail = _exact(schemas.AdapterDetail, c.get("/v1/adapters/default/medical").json())
    assert detail["aliases"] == {"prod": 1} and detail["versions"] == 1
    assert len(detail["recent_versions"]["items"]) == 1
    versions = c.get("/v1/adapters/default/medical/versions").json()
    _exact(schemas.Page[schemas.VersionSummary], versions)
    _exact(schemas.Page[schemas.BaseModelSummary], c.get("/v1/base-models").json())
    _exact(schemas.BaseModelDetail, c.get("/v1/base-models/org/tiny").json())
    _exact(schemas.RepairReport, c.post("/v1/admin/repair-json").json())
    _exact(schemas.GcReport, c.post("/v1/admin/gc").json())

    ctx.store.delete(blob_key(hashlib.sha256(ADAPTER_FILES["adapter_config.json"]).hexdigest()))
    report = _exact(schemas.FsckReport, c.post("/v1/admin/fsck").json())
    assert report["problems"][0]["problem"] == "missing"
    assert {v["ref"] for v in report["versions"]} == {"default/medical-v1", "default/other-v1"}
