"""Bad input at publish answers a 4xx naming the problem and writes nothing (both backends).

Items 10-15 of issue 9: a catastrophic regex, deep JSON, odd values (inf, lone
surrogates, NUL, huge names), headers the real parser refuses, pickles under
innocent names, and paths some system cannot create.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import struct
import threading
import time

import httpx
import pytest
from sqlmodel import Session, select

from registry.models import Version
from tests.support.publish import file_entries, publish, send_blob, start_upload

pytestmark = pytest.mark.integration


def _error(r: httpx.Response, status: int | tuple[int, ...] = 422) -> dict:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]


def _with_config(files: dict[str, bytes], **changes) -> dict[str, bytes]:
    config = json.loads(files["adapter_config.json"])
    config.update(changes)
    return {**files, "adapter_config.json": json.dumps(config).encode()}


def _raw_json(api: httpx.Client, url: str, body_text: str) -> httpx.Response:
    """POST a JSON text as is (httpx would refuse to encode a lone surrogate)."""
    return api.post(url, content=body_text.encode(), headers={"content-type": "application/json"})


def _nothing_written(api: httpx.Client, name: str) -> None:
    assert api.get(f"/v1/resolve/{name}").status_code == 404


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def _lora_tensor_names(files: dict[str, bytes]) -> list[str]:
    raw = files["adapter_model.safetensors"]
    (n,) = struct.unpack("<Q", raw[:8])
    return [k for k in json.loads(raw[8 : 8 + n]) if k != "__metadata__"]


def _rename_tensors(files: dict[str, bytes], rename) -> dict[str, bytes]:
    """The adapter's weights with every tensor name passed through ``rename`` (JSON text)."""
    raw = files["adapter_model.safetensors"]
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps({(k if k == "__metadata__" else rename(k)): v for k, v in header.items()})
    text = text.replace("@SURROGATE@", "\\ud800")
    head = text.encode()
    return {
        **files,
        "adapter_model.safetensors": struct.pack("<Q", len(head)) + head + raw[8 + n :],
    }


# ------------------------------------------------------------------ item 10: ReDoS


def test_catastrophic_regex_is_refused_quickly_while_others_are_served(admin_api, adapter_files):
    # modules named 'aaa...' (34+ a's): '(a|aa)+b' backtracks on them for ages with Python's re
    prefix = "base_model.model."
    module_of: dict[str, str] = {}
    for name in _lora_tensor_names(adapter_files):
        module = name[len(prefix) :].rsplit(".lora_", 1)[0]
        module_of.setdefault(module, "a" * (34 + len(module_of)))

    def rename(name: str) -> str:
        module, part = name[len(prefix) :].rsplit(".lora_", 1)
        return f"{prefix}{module_of[module]}.lora_{part}"

    files = _with_config(_rename_tensors(adapter_files, rename), target_modules="(a|aa)+b")
    r = start_upload(admin_api, "evil", files)
    assert r.status_code == 201, r.text
    upload = r.json()
    by_sha = {hashlib.sha256(data).hexdigest(): data for data in files.values()}
    for blob in upload["blobs"]:
        if not blob["present"]:
            assert send_blob(admin_api, blob, by_sha[blob["sha256"]]).status_code == 200

    health_times: list[float] = []
    stop = threading.Event()

    def poll_health() -> None:
        with httpx.Client(base_url=str(admin_api.base_url), timeout=5) as other:
            while not stop.is_set():
                started = time.monotonic()
                assert other.get("/v1/health").status_code == 200
                health_times.append(time.monotonic() - started)
                time.sleep(0.02)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        started = time.monotonic()
        commit = admin_api.post(f"/v1/uploads/{upload['upload_id']}/commit", timeout=10)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        poller.join()
    error = _error(commit)
    assert error["code"] == "invalid_config" and "took longer than" in error["message"]
    assert elapsed < 1.0, elapsed
    assert health_times and max(health_times) < 1.0, health_times
    _nothing_written(admin_api, "evil")


# ------------------------------------------------------------------ item 11: depth


def test_deep_config_metadata_and_params_are_refused_before_anything_is_written(
    admin_api, adapter_files
):
    r, _ = publish(admin_api, "deepcfg", _with_config(adapter_files, x=_nested(300)))
    error = _error(r)
    assert error["code"] == "invalid_config" and "nested deeper than" in error["message"]
    _nothing_written(admin_api, "deepcfg")

    r = start_upload(admin_api, "deepmeta", adapter_files, metadata={"a": _nested(400)})
    error = _error(r)
    assert error["code"] == "invalid_request" and "metadata.a" in error["message"]
    assert publish(admin_api, "base-of-params", adapter_files)[0].status_code == 201
    r = start_upload(
        admin_api,
        "deepparams",
        adapter_files,
        parents=[{"ref": "base-of-params", "params": {"p": _nested(400)}}],
    )
    assert "parents[0].params.p" in _error(r)["message"]
    _nothing_written(admin_api, "deepmeta")


def test_an_already_stored_deep_config_resolves_and_is_repaired(
    registry_server, admin_api, adapter_files
):
    assert publish(admin_api, "poisoned", adapter_files)[0].status_code == 201
    with Session(registry_server.ctx.engine) as session:  # a version written before the bound
        version = session.exec(select(Version)).one()
        version.config = {**version.config, "x": _nested(300)}
        version.meta = {"m": _nested(300)}
        session.add(version)
        session.commit()
    for ref in ("poisoned-v1", "poisoned"):
        r = admin_api.get(f"/v1/resolve/{ref}")
        assert r.status_code == 200, r.text
        assert "removed: nested deeper than" in json.dumps(r.json()["config"]["x"])
    repaired = admin_api.post("/v1/admin/repair-json")
    assert repaired.status_code == 200, repaired.text
    assert len(repaired.json()["repaired"]) == 2
    assert admin_api.post("/v1/admin/repair-json").json() == {"repaired": []}
    assert admin_api.get("/v1/resolve/poisoned").json()["config"]["peft_type"] == "LORA"


# ------------------------------------------------------------------ item 12: odd values


@pytest.mark.parametrize(
    ("config_text", "fragment"),
    [
        ('"lora_dropout": 1e400', "out of range"),
        ('"x_note": "\\ud800"', "lone surrogate"),
        ('"x_note": "CAUSAL\\u0000LM"', "NUL"),
        ('"\\udc00": 1', "lone surrogate"),
    ],
    ids=["inf", "surrogate-value", "nul", "surrogate-key"],
)
def test_odd_config_values_are_refused(admin_api, adapter_files, config_text, fragment):
    text = adapter_files["adapter_config.json"].decode()
    files = {**adapter_files, "adapter_config.json": ("{" + config_text + ", " + text[1:]).encode()}
    r, _ = publish(admin_api, "odd", files)
    error = _error(r)
    assert error["code"] == "invalid_config" and fragment in error["message"]
    _nothing_written(admin_api, "odd")


def test_huge_base_model_name_in_the_config_is_refused(admin_api, adapter_files):
    r, _ = publish(
        admin_api, "hugebase", _with_config(adapter_files, base_model_name_or_path="x" * 100_000)
    )
    error = _error(r)
    assert "base_model_name_or_path" in error["message"] and "256" in error["message"]
    _nothing_written(admin_api, "hugebase")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("description", "a\\u0000b"),
        ("base_model", "tiny\\u0000llama"),
        ("description", "\\ud800"),
        ("name", "x\\ud800"),
        ("metadata", '{"k": 1e400}'),
        ("metadata", '{"\\ud800": 1}'),
    ],
)
def test_odd_request_values_are_refused_naming_the_field(admin_api, adapter_files, field, value):
    entries = json.dumps(file_entries(adapter_files))
    literal = value if value.startswith("{") else f'"{value}"'
    body = f'{{"name": "oddreq", "files": {entries}, "{field}": {literal}}}'
    if field == "name":
        body = f'{{"files": {entries}, "name": {literal}}}'
    r = _raw_json(admin_api, "/v1/uploads", body)
    error = _error(r)
    assert error["code"] == "invalid_request" and field in error["message"], error
    _nothing_written(admin_api, "oddreq")


def test_nul_in_the_upload_id_is_a_404(admin_api):
    for upload_id in ("abc%00def", "x" * 5000, "%ED%A0%80"):
        _error(admin_api.post(f"/v1/uploads/{upload_id}/commit"), 404)


# ------------------------------------------------------------------ item 13: real parser


def test_lone_surrogate_tensor_name_is_refused(admin_api, adapter_files):
    names = _lora_tensor_names(adapter_files)
    files = _rename_tensors(adapter_files, lambda k: k + "@SURROGATE@" if k == names[0] else k)
    r, _ = publish(admin_api, "surrogate", files)
    error = _error(r)
    assert error["code"] == "invalid_safetensors" and "lone surrogate" in error["message"]
    _nothing_written(admin_api, "surrogate")


# ------------------------------------------------------------------ item 14: pickles

PROTO0 = b"cos\nsystem\n(S'echo pwned'\ntR."


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("README.md", PROTO0),
        ("tokenizer.json", pickle.dumps({"a": 1}, protocol=0)),
        ("training_args.json", pickle.dumps({"a": 1}, protocol=4)[2:]),
        ("x.SAFETENSORS", pickle.dumps({"a": 1}, protocol=4)),
        ("notes.txt", gzip.compress(PROTO0)),
        ("tokenizer.model", b"junk" + b"PK\x03\x04" + bytes(40)),
    ],
    ids=["readme-proto0", "json-proto0", "json-stripped", "upper-safetensors", "gzip", "zip-junk"],
)
def test_pickles_under_innocent_names_are_refused(admin_api, adapter_files, path, data):
    r, _ = publish(admin_api, "sneaky", {**adapter_files, path: data})
    error = _error(r)
    assert error["code"] in ("pickle_refused", "invalid_file_content", "invalid_safetensors")
    assert path in error["message"]
    _nothing_written(admin_api, "sneaky")


@pytest.mark.parametrize("path", ["notes.dat", "weights.tar", "blob.gz", "model.onnx"])
def test_unknown_kinds_are_refused_at_upload(admin_api, adapter_files, path):
    error = _error(start_upload(admin_api, "kinds", {**adapter_files, path: b"x"}))
    assert error["code"] == "unsupported_file" and path in error["message"]


def test_real_tokenizer_files_are_accepted(admin_api, adapter_files):
    extra = {
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE"}}).encode(),
        "tokenizer_config.json": b'{"model_max_length": 64}',
        "special_tokens_map.json": b'{"eos_token": "</s>"}',
        "merges.txt": b"#version: 0.2\na b\n",
        "chat_template.jinja": b"{% for m in messages %}{{ m.content }}{% endfor %}",
        "tokenizer.model": b"\x0a\x07\x0a\x05<unk>\x12\x00",
        "LICENSE": b"Apache License\n",
    }
    r, _ = publish(admin_api, "withtok", {**adapter_files, **extra})
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------ item 15: paths


@pytest.mark.parametrize(
    "paths",
    [
        ["x.md", "x.md/y.md"],
        ["notes.md", "NOTES.md"],
        ["caf\u00e9.md", "cafe\u0301.md"],
        ["\uff0e\uff0e/x.md"],
        ["nul.txt"],
        ["CON"],
        ["docs./a.md"],
        ["a /b.md"],
    ],
    ids=["file-and-folder", "case", "nfc-nfd", "fullwidth-dots", "nul", "con", "dot", "space"],
)
def test_unportable_paths_are_refused_at_upload(admin_api, adapter_files, paths):
    files = {**adapter_files, **{p: b"text\n" for p in paths}}
    error = _error(start_upload(admin_api, "paths", files))
    assert error["code"] == "invalid_path"
