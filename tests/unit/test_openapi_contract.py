"""The OpenAPI schema states the real HTTP contract, and real answers match it.

An in-process app on SQLite + the local store (no server, no torch): a tiny
hand-made LoRA adapter is published through the API, then resolved.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.auth import ANONYMOUS as ANON
from registry.schemas import ErrorResponse, JobView, ResolvedVersion
from tests.support.dispatch import RecordingDispatcher

ERROR_REF = "#/components/schemas/ErrorResponse"
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


@pytest.fixture
def live(tmp_path) -> Iterator[tuple[TestClient, Any]]:
    """(client with the admin token, service context) of a fresh in-process registry."""
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    settings = Settings(
        data_dir=tmp_path / "registry",
        database_url=f"sqlite:///{tmp_path / 'registry' / 'loreg.db'}",
        secret_key=secrets.token_hex(16),
    )
    ctx, token = prepare(settings)
    ctx._dispatcher = RecordingDispatcher()
    client = TestClient(
        create_app(context=ctx),
        headers={"Authorization": f"Bearer {token}"},
        raise_server_exceptions=False,
    )
    try:
        yield client, ctx
    finally:
        client.close()
        ctx.engine.dispose()


@pytest.fixture
def client(live) -> TestClient:
    """The admin client of the live registry."""
    return live[0]


def publish(client: TestClient, name: str, **extra: Any) -> dict[str, Any]:
    """Publish the tiny adapter as ``name``; the commit answer's resolve object."""
    blobs = {hashlib.sha256(b).hexdigest(): b for b in ADAPTER_FILES.values()}
    entries = [
        {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for p, b in ADAPTER_FILES.items()
    ]
    r = client.post("/v1/uploads", json={"name": name, "files": entries, **extra})
    assert r.status_code == 201, r.text
    upload = r.json()
    for blob in upload["blobs"]:
        if not blob["present"]:
            sent = client.put(blob["upload"]["url"], content=blobs[blob["sha256"]])
            assert sent.status_code == 200, sent.text
    r = client.post(f"/v1/uploads/{upload['upload_id']}/commit")
    assert r.status_code == 201, r.text
    return r.json()["resolved"]


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict[str, Any]:
    """The served ``/openapi.json``."""
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    folder = tmp_path_factory.mktemp("openapi")
    ctx, _ = prepare(
        Settings(
            data_dir=folder,
            database_url=f"sqlite:///{folder / 'loreg.db'}",
            secret_key=secrets.token_hex(16),
        )
    )
    try:
        with TestClient(create_app(context=ctx)) as c:
            r = c.get("/openapi.json")
        assert r.status_code == 200
        return r.json()
    finally:
        ctx.engine.dispose()


def _schema(openapi: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref")
    if ref is None:
        return ref_or_schema
    return openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _json_schema(response: dict[str, Any]) -> dict[str, Any]:
    return response["content"]["application/json"]["schema"]


def _types(prop: dict[str, Any]) -> set[str]:
    if "type" in prop:
        return {prop["type"]}
    return {t for alt in prop.get("anyOf", []) for t in _types(alt)}


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


# --- the schema ---------------------------------------------------------------------


def test_resolve_declares_the_manifest_with_required_fields_and_types(openapi) -> None:
    op = openapi["paths"]["/v1/resolve/{ref}"]["get"]
    body = _json_schema(op["responses"]["200"])
    assert body == {"$ref": "#/components/schemas/ResolvedVersion"}
    resolved = _schema(openapi, body)
    assert resolved["type"] == "object"
    required = set(resolved["required"])
    assert {"ref", "namespace", "name", "version", "digest", "files", "config", "base_model"} <= (
        required
    )
    assert set(ResolvedVersion.model_fields) == required  # nothing the server sends is optional
    props = resolved["properties"]
    for field in ("ref", "namespace", "name", "digest", "created_at"):
        assert _types(props[field]) == {"string"}, field
    assert _types(props["version"]) == {"integer"}
    assert _types(props["size"]) == {"integer"}
    assert _types(props["base_model"]) == {"string", "null"}
    assert _types(props["config"]) == {"object", "null"}
    assert _types(props["base_model_registered"]) == {"boolean"}
    assert props["files"]["type"] == "array"
    file_schema = _schema(openapi, props["files"]["items"])
    assert set(file_schema["required"]) == {"path", "size", "sha256", "url"}
    assert {k: _types(v) for k, v in file_schema["properties"].items()} == {
        "path": {"string"},
        "size": {"integer"},
        "sha256": {"string"},
        "url": {"string"},
    }


def test_jobs_declare_the_job_view(openapi) -> None:
    submit = openapi["paths"]["/v1/jobs"]["post"]
    assert set(submit["responses"]) >= {"202", "401", "403", "404", "422"}
    assert "200" not in submit["responses"]
    assert _json_schema(submit["responses"]["202"]) == {"$ref": "#/components/schemas/JobView"}
    got = openapi["paths"]["/v1/jobs/{job_id}"]["get"]
    assert _json_schema(got["responses"]["200"]) == {"$ref": "#/components/schemas/JobView"}
    job = _schema(openapi, {"$ref": "#/components/schemas/JobView"})
    assert {"id", "status", "progress", "error", "attempts", "result"} <= set(job["required"])
    props = job["properties"]
    assert props["status"]["enum"] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert _types(props["progress"]) == {"number"}
    assert _types(props["attempts"]) == {"integer"}
    assert _types(props["error"]) == {"string", "null"}
    assert _types(props["result"]) == {"object", "null"}


def test_error_shape_is_ours_on_404_and_422(openapi) -> None:
    error = openapi["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    body = _schema(openapi, error["properties"]["error"])
    assert set(body["required"]) == {"code", "message"}
    assert _types(body["properties"]["code"]) == {"string"}
    assert _types(body["properties"]["message"]) == {"string"}
    for path, method in (("/v1/resolve/{ref}", "get"), ("/v1/jobs", "post")):
        responses = openapi["paths"][path][method]["responses"]
        for status in ("401", "404", "422"):
            assert _json_schema(responses[status]) == {"$ref": ERROR_REF}, (path, status)


def test_no_fastapi_validation_schema_anywhere(openapi) -> None:
    text = json.dumps(openapi)
    assert "HTTPValidationError" not in text
    assert "ValidationError" not in openapi["components"]["schemas"]
    for method, path, op in _operations(openapi):
        has_input = op.get("parameters") or op.get("requestBody")
        if has_input:
            assert _json_schema(op["responses"]["422"]) == {"$ref": ERROR_REF}, (method, path)
        for status, response in op["responses"].items():
            if status[0] in "45":
                assert _json_schema(response) == {"$ref": ERROR_REF}, (method, path, status)


def test_bearer_security_scheme(openapi) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http"
    assert schemes["bearer"]["scheme"] == "bearer"
    # a token is optional (anonymous reads public namespaces): bearer or nothing
    for path, method in (("/v1/resolve/{ref}", "get"), ("/v1/jobs", "post"), ("/v1/whoami", "get")):
        op = openapi["paths"][path][method]
        assert op["security"] == [{"bearer": []}, {}], path
        assert op["responses"]["401"]
    assert "security" not in openapi["paths"]["/v1/health"]["get"]
    # the header is a security scheme, not an undocumented parameter
    for _, _, op in _operations(openapi):
        names = {p["name"].lower() for p in op.get("parameters", [])}
        assert "authorization" not in names


# --- real answers -------------------------------------------------------------------


def test_real_resolve_answer_validates_and_keeps_every_field(live) -> None:
    from registry.services import catalog

    client, ctx = live
    publish(client, "medical", description="d", metadata={"k": [1, 2.5, None]})
    assert client.put("/v1/adapters/default/medical/aliases/prod", json={"version": 1}).is_success
    r = client.get("/v1/resolve/medical@prod")
    assert r.status_code == 200, r.text
    body = r.json()
    model = ResolvedVersion.model_validate(body)
    assert model.ref == "default/medical-v1"
    assert (model.namespace, model.name, model.version) == ("default", "medical", 1)
    assert model.aliases == ["prod"]
    assert model.model_dump(mode="json") == body  # the model covers the answer exactly
    with Session(ctx.engine) as session:
        ns, adapter, version = catalog.resolve_ref(session, ANON, "default/medical-v1")
        view = catalog.version_view(session, ctx, ns, adapter, version, "http://testserver")
    for f_view, f_body in zip(view["files"], body["files"], strict=True):
        f_view["url"] = f_body["url"]  # signed URLs carry their expiry time
    assert list(body) == list(view)  # same keys, same order: no byte of the answer changed
    assert body == view
    assert r.content == json.dumps(view, ensure_ascii=False, separators=(",", ":")).encode()


def test_real_job_answers_validate_and_keep_every_field(live) -> None:
    from registry.services import jobs

    client, ctx = live
    publish(client, "medical")
    job = {"type": "compress", "inputs": [{"ref": "medical"}], "params": {"rank": 1}}
    r = client.post("/v1/jobs", json={**job, "output": "medical-small"})
    assert r.status_code == 202, r.text
    submitted = r.json()
    assert JobView.model_validate(submitted).model_dump(mode="json") == submitted
    assert submitted["status"] == "queued"
    assert submitted["inputs"] == [{"ref": "default/medical-v1", "weight": 1.0}]
    # the publish sent its version's card job first (docs/design.md, Cards)
    card_job, job_sent = ctx.dispatcher.sent
    assert job_sent == (submitted["id"], "cpu")
    assert client.get(f"/v1/jobs/{card_job[0]}").json()["type"] == "card"
    got = client.get(f"/v1/jobs/{submitted['id']}")
    assert got.status_code == 200
    with Session(ctx.engine) as session:
        view = jobs.job_view(jobs.get_job(session, ANON, submitted["id"]))
    assert list(got.json()) == list(view)
    assert got.content == json.dumps(view, ensure_ascii=False, separators=(",", ":")).encode()
    listed = client.get("/v1/jobs")
    assert listed.json() == {"items": [view], "next_cursor": None}
    cancelled = client.post(f"/v1/jobs/{submitted['id']}/cancel").json()
    assert JobView.model_validate(cancelled).status == "cancelled"
    assert set(cancelled) == set(JobView.model_fields)


def test_real_lifecycle_answers_validate_and_keep_every_field(live) -> None:
    from registry.schemas import AdapterDetail, DeleteResult, DeprecationResult, YankResult

    client, _ = live
    publish(client, "medical")
    publish(client, "child", parents=[{"ref": "medical-v1", "relation": "compressed_from"}])
    yanked = client.post("/v1/adapters/default/medical/versions/1/yank", json={"reason": "r"})
    assert yanked.status_code == 200, yanked.text
    assert YankResult.model_validate(yanked.json()).model_dump(mode="json") == yanked.json()
    body = {"message": "old", "successor": "child"}
    deprecated = client.put("/v1/adapters/default/medical/deprecation", json=body)
    assert deprecated.status_code == 200, deprecated.text
    model = DeprecationResult.model_validate(deprecated.json())
    assert model.model_dump(mode="json") == deprecated.json()
    detail = client.get("/v1/adapters/default/medical").json()
    assert AdapterDetail.model_validate(detail).model_dump(mode="json") == detail
    refused = client.delete("/v1/adapters/default/medical/versions/1")
    assert refused.status_code == 409
    error = ErrorResponse.model_validate(refused.json())
    assert error.error.code == "conflict" and error.error.details["dependents"]
    deleted = client.delete("/v1/adapters/default/child")
    assert deleted.status_code == 200, deleted.text
    assert DeleteResult.model_validate(deleted.json()).model_dump(mode="json") == deleted.json()


def test_real_errors_validate_against_the_error_model(client) -> None:
    for r in (
        client.get("/v1/resolve/nothing-here"),  # 404
        client.get("/v1/resolve/Bad Ref"),  # 422 invalid_ref
        client.put("/v1/adapters/default/x/aliases/prod", json={"version": "three"}),  # 422
        client.get("/v1/jobs/nope"),  # 404
        client.get("/v1/whoami", headers={"Authorization": "Basic abc"}),  # 401
    ):
        assert r.status_code in (401, 404, 422), r.text
        error = ErrorResponse.model_validate(r.json()).error
        assert error.code and error.message


def test_every_json_body_route_declares_and_answers_400_for_broken_json(openapi, client) -> None:
    with_body = [
        (path, method)
        for path, ops in openapi["paths"].items()
        for method, op in ops.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]
    assert len(with_body) >= 6, with_body
    for path, method in with_body:
        assert "400" in openapi["paths"][path][method]["responses"], (method, path)
    r = client.post(
        "/v1/namespaces", content=b"\xff{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert ErrorResponse.model_validate(r.json()).error.code == "bad_request"


# --- integer bounds: out-of-range numbers are a 422 naming the field, never a 500 ----------

HUGE = 2**70  # overflows every database integer column (SQLite raised OverflowError: a 500)
SHA = "0" * 64


def _integer_schemas(openapi: dict[str, Any], schema: dict[str, Any], seen: set[str]):
    """(name, schema) of every integer property reachable from a request-body schema."""
    ref = schema.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return
        seen.add(name)
        schema = openapi["components"]["schemas"][name]
    for alt in schema.get("anyOf", []):
        yield from _integer_schemas(openapi, alt, seen)
    if "items" in schema:
        yield from _integer_schemas(openapi, schema["items"], seen)
    for key, prop in schema.get("properties", {}).items():
        if "integer" in _types(prop):
            yield key, prop
        yield from _integer_schemas(openapi, prop, seen)


def _maximum(schema: dict[str, Any]) -> int | None:
    if "maximum" in schema:
        return schema["maximum"]
    return next((alt["maximum"] for alt in schema.get("anyOf", []) if "maximum" in alt), None)


def test_every_integer_a_request_carries_has_an_upper_bound(openapi) -> None:
    checked = []
    for method, path, op in _operations(openapi):
        for param in op.get("parameters", []):
            if "integer" in _types(param["schema"]):
                assert _maximum(param["schema"]) is not None, (method, path, param["name"])
                checked.append(param["name"])
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            for name, prop in _integer_schemas(openapi, body["schema"], set()):
                assert _maximum(prop) is not None, (method, path, name)
                checked.append(name)
    assert {"version", "size", "part_number", "limit", "expires"} <= set(checked)


def test_documented_bounds() -> None:
    from loreg.refs import MAX_VERSION
    from registry.schemas import MAX_INT64, AliasRequest, FileEntry

    assert AliasRequest.model_json_schema()["properties"]["version"]["maximum"] == MAX_VERSION
    assert FileEntry.model_json_schema()["properties"]["size"]["maximum"] == MAX_INT64


def _assert_field_error(r, field: str, code: str = "invalid_request") -> None:
    assert r.status_code == 422, r.text
    error = ErrorResponse.model_validate(r.json()).error
    assert error.code == code, r.text
    assert field in error.message, r.text


@pytest.mark.parametrize("version", [HUGE, 2**31, 0, -1])
def test_alias_version_out_of_range_is_a_422_naming_the_field(client, version) -> None:
    publish(client, "x")
    r = client.put("/v1/adapters/default/x/aliases/prod", json={"version": version})
    _assert_field_error(r, "version")


def test_alias_version_at_the_bound_is_just_not_found(client) -> None:
    from loreg.refs import MAX_VERSION

    publish(client, "x")
    r = client.put("/v1/adapters/default/x/aliases/prod", json={"version": MAX_VERSION})
    assert r.status_code == 404, r.text
    assert client.put("/v1/adapters/default/x/aliases/prod", json={"version": 1}).is_success


@pytest.mark.parametrize(
    ("method", "url", "field", "kwargs"),
    [
        (
            "POST",
            "/v1/uploads",
            "files.0.size",
            {"json": {"name": "x", "files": [{"path": "a.json", "size": HUGE, "sha256": SHA}]}},
        ),
        (
            "POST",
            f"/v1/uploads/u1/blobs/{SHA}/complete",
            "parts.0.part_number",
            {"json": {"parts": [{"part_number": HUGE, "etag": "e"}]}},
        ),
        ("GET", "/v1/jobs", "limit", {"params": {"limit": HUGE}}),
        ("GET", "/v1/jobs", "limit", {"params": {"limit": 0}}),
        ("GET", "/v1/jobs", "limit", {"params": {"limit": 201}}),
        ("GET", f"/v1/blobs/{SHA}", "expires", {"params": {"expires": HUGE, "signature": "s"}}),
        ("GET", f"/v1/blobs/{SHA}", "expires", {"params": {"expires": -1, "signature": "s"}}),
    ],
)
def test_out_of_range_integers_are_a_422_naming_the_field(
    client, method, url, field, kwargs
) -> None:
    _assert_field_error(client.request(method, url, **kwargs), field)


def test_other_huge_numbers_are_refused_or_stored_not_a_500(client) -> None:
    publish(client, "x")
    # a version number in a ref: the ref grammar bounds it
    _assert_field_error(client.get(f"/v1/resolve/x-v{HUGE}"), "version", code="invalid_ref")
    # integer job params: the job validation bounds them
    job = {"type": "compress", "inputs": [{"ref": "x"}], "params": {"rank": HUGE}, "output": "y"}
    _assert_field_error(client.post("/v1/jobs", json=job), "params.rank", code="invalid_job")
    # free-form JSON (metadata) keeps big numbers as JSON
    resolved = publish(client, "big", metadata={"n": HUGE})
    assert client.get(f"/v1/resolve/{resolved['ref']}").json()["metadata"] == {"n": HUGE}
