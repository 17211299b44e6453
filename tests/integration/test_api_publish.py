"""The publish/resolve HTTP contract on both backends, driven with raw HTTP (no SDK)."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import struct

import httpx
import pytest

from tests.support.publish import file_entries, publish, send_blob, start_upload

pytestmark = pytest.mark.integration


def st_bytes(header: dict, data: bytes) -> bytes:
    """A safetensors file from a header dict and the raw data area."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return body["error"]


def test_publish_resolve_and_download(admin_api, anon_api, adapter_files):
    r, upload = publish(admin_api, "medical", adapter_files)
    assert r.status_code == 201, r.text
    assert all(not b["present"] for b in upload["blobs"])
    resolved = r.json()["resolved"]
    assert resolved["ref"] == "default/medical-v1"
    assert (resolved["namespace"], resolved["name"], resolved["version"]) == (
        "default",
        "medical",
        1,
    )
    assert resolved["digest"].startswith("sha256:")
    assert resolved["config"]["peft_type"] == "LORA"
    assert resolved["summary"]["r"] == 4

    got = anon_api.get("/v1/resolve/medical-v1")
    assert got.status_code == 200, got.text
    view = got.json()
    assert view["digest"] == resolved["digest"]
    assert {f["path"] for f in view["files"]} == set(adapter_files)
    with httpx.Client(timeout=30) as plain:  # download URLs need no token
        for f in view["files"]:
            body = plain.get(f["url"]).content
            assert body == adapter_files[f["path"]]
            assert hashlib.sha256(body).hexdigest() == f["sha256"] and len(body) == f["size"]
    for spelling in (
        "medical",
        "default/medical",
        "medical:1",
        "medical:v1",
        f"medical@{resolved['digest']}",
    ):
        assert anon_api.get(f"/v1/resolve/{spelling}").json()["version"] == 1, spelling


def test_republish_identical_is_idempotent_and_new_content_is_v2(
    admin_api, adapter_files, other_adapter_files
):
    first, _ = publish(admin_api, "med", adapter_files)
    again, upload = publish(admin_api, "med", adapter_files)
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert all(b["present"] for b in upload["blobs"])  # nothing re-sent
    assert again.json()["resolved"]["digest"] == first.json()["resolved"]["digest"]
    assert again.json()["resolved"]["version"] == 1
    second, _ = publish(admin_api, "med", other_adapter_files)
    assert second.status_code == 201
    assert second.json()["resolved"]["version"] == 2
    assert admin_api.get("/v1/resolve/med").json()["version"] == 2
    detail = admin_api.get("/v1/adapters/default/med").json()
    assert detail["versions"] == 2  # the count; the newest versions come as a page
    assert [v["version"] for v in detail["recent_versions"]["items"]] == [2, 1]


def test_blobs_are_deduplicated_across_adapters(admin_api, adapter_files):
    publish(admin_api, "one", adapter_files)
    files = dict(adapter_files)
    files["README.md"] = b"# another card\n"
    r = start_upload(admin_api, "two", files)
    present = {b["sha256"]: b["present"] for b in r.json()["blobs"]}
    weights = hashlib.sha256(adapter_files["adapter_model.safetensors"]).hexdigest()
    assert present[weights] is True
    assert present[hashlib.sha256(b"# another card\n").hexdigest()] is False


def test_a_private_blob_is_not_reusable_by_knowing_its_sha256(
    registry_server, admin_api, adapter_files
):
    assert admin_api.post("/v1/namespaces", json={"name": "vault", "private": True}).is_success
    r, _ = publish(admin_api, "hidden", adapter_files, namespace="vault")
    assert r.status_code == 201, r.text
    writer = admin_api.post(
        "/v1/tokens", json={"name": "w", "grants": [{"namespace": "default", "scope": "write"}]}
    ).json()["token"]
    with httpx.Client(
        base_url=registry_server.url, headers={"Authorization": f"Bearer {writer}"}, timeout=30
    ) as outsider:
        # the outsider declares the private files by hash and size only: nothing is present
        r, upload = publish(outsider, "copy", adapter_files, send=False)
        assert [b["present"] for b in upload["blobs"]] == [False] * len(upload["blobs"])
        assert r.status_code == 409 and error_of(r)["code"] == "missing_blob", r.text
        for blob in upload["blobs"]:  # "completing" without sending proves nothing either
            if blob["upload"]["method"] == "api":
                rr = outsider.put(blob["upload"]["url"], content=b"")
            else:
                rr = outsider.post(blob["upload"]["complete_url"], json={})
            assert rr.status_code in (404, 409, 422), rr.text
        r = outsider.post(f"/v1/uploads/{upload['upload_id']}/commit")
        assert r.status_code == 409 and error_of(r)["code"] == "missing_blob", r.text
        assert outsider.get("/v1/resolve/copy").status_code == 404
        # sending the bytes proves possession: then the publish goes through
        r, _ = publish(outsider, "copy", adapter_files)
        assert r.status_code == 201, r.text
    # a reader of vault still reuses the stored blobs without sending them
    r = start_upload(admin_api, "again", adapter_files)
    assert all(b["present"] for b in r.json()["blobs"])


def test_aliases_move_and_are_audited(admin_api, anon_api, adapter_files, other_adapter_files):
    publish(admin_api, "al", adapter_files)
    publish(admin_api, "al", other_adapter_files)
    r = admin_api.put("/v1/adapters/default/al/aliases/prod", json={"version": 1})
    assert r.json() == {"alias": "prod", "version": 1, "previous": None}
    got = anon_api.get("/v1/resolve/al@prod")
    assert got.status_code == 200, got.text
    assert got.json()["version"] == 1
    r = admin_api.put("/v1/adapters/default/al/aliases/prod", json={"version": 2})
    assert r.json()["previous"] == 1
    assert anon_api.get("/v1/resolve/al@prod").json()["version"] == 2
    assert (
        anon_api.put("/v1/adapters/default/al/aliases/prod", json={"version": 1}).status_code == 401
    )
    r = admin_api.delete("/v1/adapters/default/al/aliases/prod")
    assert r.json()["previous"] == 2
    assert error_of(anon_api.get("/v1/resolve/al@prod"))["code"] == "not_found"
    assert (
        admin_api.put("/v1/adapters/default/al/aliases/prod", json={"version": 9}).status_code
        == 404
    )


def test_audit_log_records_publish_and_alias(registry_server, admin_api, adapter_files):
    from sqlmodel import Session, select

    from registry.models import AuditEvent

    publish(admin_api, "aud", adapter_files)
    admin_api.put("/v1/adapters/default/aud/aliases/prod", json={"version": 1})
    admin_api.put("/v1/adapters/default/aud/aliases/prod", json={"version": 1})
    with Session(registry_server.ctx.engine) as s:
        actions = [(e.action, e.actor, e.target) for e in s.exec(select(AuditEvent)).all()]
    assert ("version.publish", "admin", "aud-v1") in actions
    assert actions.count(("alias.set", "admin", "aud@prod")) == 2


# ------------------------------------------------------------------ bad input: 4xx, never 500


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../evil.json", "invalid_path"),
        ("/etc/passwd", "invalid_path"),
        ("a/../../b", "invalid_path"),
        ("bad\x00name", "invalid_path"),
        ("pytorch_model.bin", "pickle_refused"),
        ("weights.pt", "pickle_refused"),
        ("state.pkl", "pickle_refused"),
    ],
)
def test_bad_file_names_are_refused(admin_api, adapter_files, path, code):
    files = dict(adapter_files)
    files[path] = b"x"
    r = start_upload(admin_api, "badpath", files)
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == code


@pytest.mark.parametrize(
    ("path", "data", "words"),
    [
        ("notes.txt", pickle.dumps({"a": 1}, protocol=4), "a pickle (protocol 4)"),
        ("tokenizer.model", b"PK\x03\x04" + b"\0" * 26 + b"archive/data.pkl", "zip archive"),
        ("extra.json", gzip.compress(pickle.dumps([1, 2], protocol=2)), "gzip-compressed a pickle"),
    ],
    ids=["renamed-pickle", "torch-zip", "gzipped-pickle"],
)
def test_pickle_content_is_refused_whatever_the_name(admin_api, adapter_files, path, data, words):
    files = {**adapter_files, path: data}
    r, _ = publish(admin_api, "sneaky", files)
    assert r.status_code == 422, r.text
    error = error_of(r)
    assert error["code"] == "pickle_refused" and path in error["message"]
    assert words in error["message"]
    assert admin_api.get("/v1/resolve/sneaky").status_code == 404  # nothing half-written


@pytest.mark.parametrize("name", ["Medical", "medical-v3", "a/b", "-x", "x" * 65, "", "a b"])
def test_bad_adapter_names_are_refused(admin_api, adapter_files, name):
    r = start_upload(admin_api, name, adapter_files)
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] in ("invalid_name", "invalid_request")


def test_required_files_and_duplicates(admin_api, adapter_files):
    only_config = {"adapter_config.json": adapter_files["adapter_config.json"]}
    r = start_upload(admin_api, "x", only_config)
    assert error_of(r)["code"] == "invalid_manifest"
    assert "adapter_model.safetensors" in error_of(r)["message"]
    entries = file_entries(adapter_files)
    r = admin_api.post("/v1/uploads", json={"name": "x", "files": entries + entries[:1]})
    assert error_of(r)["code"] == "invalid_manifest"


def _with_weights(adapter_files, weights: bytes) -> dict[str, bytes]:
    files = dict(adapter_files)
    files["adapter_model.safetensors"] = weights
    return files


def _good_header_tensor() -> tuple[dict, bytes]:
    return {"t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 16


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param(b"not a safetensors file at all", id="garbage"),
        pytest.param(b"\x01\x02", id="shorter-than-8"),
        pytest.param(struct.pack("<Q", 10**6) + b"{}", id="header-past-eof"),
        pytest.param(struct.pack("<Q", 4) + b"[1,2", id="header-not-json-object"),
        pytest.param(
            st_bytes({"t": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]}}, b"\0" * 16),
            id="shape-lie",
        ),
        pytest.param(
            st_bytes({"t": {"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
            id="unknown-dtype",
        ),
        pytest.param(
            st_bytes(
                {
                    "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                    "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
                },
                b"\0" * 24,
            ),
            id="overlap",
        ),
        pytest.param(
            st_bytes({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
            id="truncated-data",
        ),
        pytest.param(
            st_bytes({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 16]}}, b"\0" * 16),
            id="negative-shape",
        ),
    ],
)
def test_lying_safetensors_are_refused_and_nothing_is_visible(admin_api, adapter_files, weights):
    r, _ = publish(admin_api, "lies", _with_weights(adapter_files, weights))
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == "invalid_safetensors"
    assert admin_api.get("/v1/resolve/lies").status_code == 404


def test_header_over_limit_is_refused(admin_api, adapter_files):
    header, data = _good_header_tensor()
    raw = json.dumps(header).encode() + b" " * (17 * 2**20)  # padded header over the 16 MiB limit
    weights = struct.pack("<Q", len(raw)) + raw + data
    r, _ = publish(admin_api, "bighdr", _with_weights(adapter_files, weights))
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "payload_too_large"


def test_config_that_contradicts_tensors_is_refused(admin_api, adapter_files):
    config = json.loads(adapter_files["adapter_config.json"])
    config["target_modules"] = ["o_proj"]
    files = dict(adapter_files)
    files["adapter_config.json"] = json.dumps(config).encode()
    r, _ = publish(admin_api, "contra", files)
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_config", r.text
    config["target_modules"] = ["q_proj", "v_proj"]
    config["r"] = 0
    files["adapter_config.json"] = json.dumps(config).encode()
    r, _ = publish(admin_api, "contra", files)
    assert error_of(r)["code"] == "invalid_config"
    files["adapter_config.json"] = b"{not json"
    r, _ = publish(admin_api, "contra", files)
    assert error_of(r)["code"] == "invalid_config"
    assert admin_api.get("/v1/resolve/contra").status_code == 404


def test_commit_with_missing_blobs_is_refused(admin_api, adapter_files):
    r, _ = publish(admin_api, "nob", adapter_files, send=False)
    assert r.status_code == 409, r.text
    err = error_of(r)
    assert err["code"] == "missing_blob"
    assert "adapter_model.safetensors" in err["message"]
    assert admin_api.get("/v1/resolve/nob").status_code == 404


def test_wrong_bytes_are_refused_and_not_stored(admin_api, adapter_files):
    r = start_upload(admin_api, "wrong", adapter_files)
    blob = next(b for b in r.json()["blobs"] if not b["present"])
    bad = b"y" * blob["size"]
    rr = send_blob(admin_api, blob, bad)
    assert rr.status_code in (400, 422), rr.text
    assert error_of(rr)["code"] in ("blob_mismatch", "bad_request")
    again = start_upload(admin_api, "wrong", adapter_files).json()
    assert not next(b for b in again["blobs"] if b["sha256"] == blob["sha256"])["present"]


def test_unknown_and_invalid_refs(anon_api, admin_api, adapter_files):
    publish(admin_api, "known", adapter_files)
    for ref, status, code in [
        ("nosuch", 404, "not_found"),
        ("known-v9", 404, "not_found"),
        ("known@nope", 404, "not_found"),
        ("nons/known", 404, "not_found"),
        ("Known", 422, "invalid_ref"),
        ("a/b/c", 422, "invalid_ref"),
        ("known@sha256:zz", 422, "invalid_ref"),
    ]:
        r = anon_api.get(f"/v1/resolve/{ref}")
        assert r.status_code == status, (ref, r.text)
        assert error_of(r)["code"] == code, ref


def test_tokens_scopes_and_private_namespaces(registry_server, admin_api, adapter_files):
    url = registry_server.url
    r = admin_api.post("/v1/namespaces", json={"name": "secret", "private": True})
    assert r.status_code == 201, r.text
    assert admin_api.post("/v1/namespaces", json={"name": "secret"}).status_code == 409
    publish(admin_api, "hidden", adapter_files, namespace="secret")
    reader = admin_api.post(
        "/v1/tokens", json={"name": "reader", "grants": [{"namespace": "secret", "scope": "read"}]}
    ).json()["token"]
    writer = admin_api.post(
        "/v1/tokens",
        json={"name": "writer", "grants": [{"namespace": "default", "scope": "write"}]},
    ).json()["token"]

    def client(token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=url, headers=headers, timeout=30)

    with (
        client() as anon,
        client(reader) as rd,
        client(writer) as wr,
        client("lrg_" + "x" * 40) as bad,
        client("nonsense") as malformed,
    ):
        # private: 404 for outsiders, 200 for readers
        assert error_of(anon.get("/v1/resolve/secret/hidden"))["code"] == "not_found"
        assert error_of(wr.get("/v1/resolve/secret/hidden"))["code"] == "not_found"
        assert rd.get("/v1/resolve/secret/hidden").status_code == 200
        assert "secret" not in [n["name"] for n in anon.get("/v1/namespaces").json()["items"]]
        assert [a["name"] for a in anon.get("/v1/adapters").json()["items"]].count("hidden") == 0
        # wrong or malformed token: 401 even on public reads
        assert error_of(bad.get("/v1/resolve/secret/hidden"))["code"] == "unauthorized"
        assert error_of(malformed.get("/v1/whoami"))["code"] == "unauthorized"
        # missing token for a write: 401; a reader writing: 403
        assert error_of(start_upload(anon, "x", adapter_files))["code"] == "unauthorized"
        r = start_upload(rd, "x", adapter_files, namespace="secret")
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
        # a writer on default can publish there but not create tokens
        r, _ = publish(wr, "bywriter", adapter_files)
        assert r.status_code in (200, 201), r.text
        r = wr.post(
            "/v1/tokens", json={"name": "t", "grants": [{"namespace": "default", "scope": "read"}]}
        )
        assert r.status_code == 403
        assert wr.get("/v1/whoami").json()["token_name"] == "writer"


def test_token_is_stored_hashed(registry_server, admin_api):
    from sqlmodel import Session, select

    from registry.models import ApiToken

    token = admin_api.post(
        "/v1/tokens", json={"name": "h", "grants": [{"namespace": "default", "scope": "read"}]}
    ).json()["token"]
    with Session(registry_server.ctx.engine) as s:
        rows = s.exec(select(ApiToken)).all()
    assert all(token not in (r.token_hash, r.prefix) for r in rows)
    assert any(r.token_hash == hashlib.sha256(token.encode()).hexdigest() for r in rows)


def test_oversized_and_malformed_bodies(admin_api):
    r = admin_api.post(
        "/v1/uploads",
        content=b"{" + b" " * (5 * 2**20) + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"
    r = admin_api.post(
        "/v1/uploads", content=b"{bad json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"
    r = admin_api.post(
        "/v1/uploads", json={"name": "x", "files": [{"path": "a", "size": -1, "sha256": "0" * 64}]}
    )
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"
    assert error_of(admin_api.get("/v1/nope"))["code"] == "not_found"


def test_base_model_registration_and_shape_check(
    admin_api, anon_api, base_files, adapter_files, tmp_path
):
    r, _ = publish(admin_api, "tiny-llama", base_files, kind="base_model")
    assert r.status_code == 201, r.text
    bm = anon_api.get("/v1/base-models/tiny-llama").json()
    assert bm["modules"]["model.layers.0.self_attn.q_proj"] == [64, 64]
    assert bm["modules"]["model.layers.1.mlp.down_proj"] == [64, 128]
    assert bm["architecture"] == "LlamaForCausalLM"
    # an adapter that fits
    r, _ = publish(admin_api, "fits", adapter_files, base_model="tiny-llama")
    assert r.status_code == 201, r.text
    assert r.json()["resolved"]["lineage"][0]["relation"] == "trained_from"
    assert r.json()["resolved"]["lineage"][0]["parent"]["ref"] == "tiny-llama"
    # an adapter for a wider model does not: 422 lists each mismatch
    from tests.support.tiny import save_adapter

    wide = save_adapter(tmp_path / "wide", base={"hidden_size": 128, "intermediate_size": 256})
    files = {p.name: p.read_bytes() for p in wide.iterdir() if p.is_file()}
    r, _ = publish(admin_api, "nofit", files, base_model="tiny-llama")
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["code"] == "shape_mismatch"
    assert len(err["details"]) == 4  # q_proj and v_proj in 2 layers
    assert "model.layers.0.self_attn.q_proj" in err["message"]
    # re-registering the same content is idempotent, other content conflicts
    again, _ = publish(admin_api, "tiny-llama", base_files, kind="base_model")
    assert again.status_code == 200
    changed = dict(base_files)
    changed["README.md"] = b"changed"
    r, _ = publish(admin_api, "tiny-llama", changed, kind="base_model")
    assert r.status_code == 409


def test_lineage_parents_are_recorded(admin_api, anon_api, adapter_files, other_adapter_files):
    publish(admin_api, "parent", adapter_files)
    r, _ = publish(
        admin_api,
        "child",
        other_adapter_files,
        parents=[{"ref": "parent-v1", "relation": "continued_from"}],
    )
    assert r.status_code == 201, r.text
    lineage = anon_api.get("/v1/resolve/child").json()["lineage"]
    assert lineage == [
        {
            "relation": "continued_from",
            "parent": {
                "kind": "version",
                "ref": "default/parent-v1",
                "digest": lineage[0]["parent"]["digest"],
                "private": False,
            },
            "params": {},
        }
    ]
    r = start_upload(admin_api, "child2", other_adapter_files, parents=[{"ref": "nosuch-v1"}])
    assert r.status_code == 404


def test_listing(admin_api, anon_api, adapter_files):
    publish(admin_api, "lst", adapter_files)
    items = anon_api.get("/v1/adapters", params={"namespace": "default"}).json()["items"]
    item = next(i for i in items if i["name"] == "lst")
    assert item["latest_version"] == 1 and item["versions"] == 1
    assert anon_api.get("/v1/adapters", params={"namespace": "BAD"}).status_code == 422


def test_lineage_names_private_parents_only_to_their_readers(
    admin_api, anon_api, adapter_files, other_adapter_files
):
    assert admin_api.post("/v1/namespaces", json={"name": "lab", "private": True}).is_success
    r, _ = publish(admin_api, "secret-base", adapter_files, namespace="lab")
    assert r.status_code == 201, r.text
    r, _ = publish(
        admin_api,
        "public-child",
        other_adapter_files,
        parents=[{"ref": "lab/secret-base-v1", "relation": "continued_from"}],
    )
    assert r.status_code == 201, r.text
    r, _ = publish(
        admin_api,
        "grandchild",
        {**other_adapter_files, "README.md": b"# grandchild\n"},
        parents=[{"ref": "public-child-v1", "relation": "continued_from", "params": {"x": 1}}],
    )
    assert r.status_code == 201, r.text

    shown = admin_api.get("/v1/resolve/public-child-v1").json()["lineage"]
    assert [(e["parent"]["ref"], e["parent"]["private"]) for e in shown] == [
        ("lab/secret-base-v1", False)
    ]
    hidden = anon_api.get("/v1/resolve/public-child-v1").json()["lineage"]
    assert [e["parent"] for e in hidden] == [
        {"kind": "version", "ref": None, "digest": None, "private": True}
    ]

    full = admin_api.get("/v1/lineage/versions/grandchild-v1").json()
    assert full["root"]["ref"] == "default/grandchild-v1" and full["truncated"] is False
    assert [(e["child"]["ref"], e["relation"], e["parent"]["ref"]) for e in full["edges"]] == [
        ("default/grandchild-v1", "continued_from", "default/public-child-v1"),
        ("default/public-child-v1", "continued_from", "lab/secret-base-v1"),
    ]
    assert full["edges"][0]["params"] == {"x": 1}
    outside = anon_api.get("/v1/lineage/versions/grandchild-v1").json()
    assert [e["parent"]["ref"] for e in outside["edges"]] == ["default/public-child-v1", None]
    assert outside["edges"][1]["parent"]["private"] is True
    assert error_of(anon_api.get("/v1/lineage/versions/lab/secret-base-v1"))["code"] == "not_found"
    assert error_of(anon_api.get("/v1/lineage/base-models/nope"))["code"] == "not_found"


@pytest.mark.parametrize("signature", ["é", "x" * 64, "", "%00"])
def test_a_forged_download_signature_is_404_not_500(anon_api, signature):
    sha = "a" * 64
    r = anon_api.get(f"/v1/blobs/{sha}", params={"expires": 2**40, "signature": signature})
    assert r.status_code == 404, r.text
    assert error_of(r)["code"] == "not_found"
