"""Training presets on both backends: built-ins read-only everywhere, a namespace's own
saved, listed, shown and deleted, and train jobs getting a copy of a preset's values."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import loreg
from tests.support.pages import all_items as _all

CHATS = [
    {"conversation": [{"human": "2+2?", "assistant": "4"}]},
    {"conversation": [{"human": "capital of France?", "assistant": "Paris"}]},
]
CLINICAL = {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"], "steps": 10}


class _NoDispatch:
    """Jobs stay queued: these tests look at what was submitted, not at runs."""

    def enqueue(self, job_id: str, queue: str) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Nothing to release."""


def _save(api: httpx.Client, name: str, params: dict, **query) -> httpx.Response:
    return api.put(f"/v1/presets/{name}", params=query, json={"params": params})


def _error(r: httpx.Response) -> dict:
    return r.json()["error"]


@pytest.fixture
def trainable(registry_server, base_dir, tmp_path) -> Iterator[loreg.Registry]:
    """A registry holding the tiny base ``tiny-llama`` and the dataset ``chat``."""
    registry_server.ctx._dispatcher = _NoDispatch()
    dataset = tmp_path / "chat.jsonl"
    dataset.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    with loreg.Registry(
        url=registry_server.url, token=registry_server.admin_token, cache_dir=tmp_path / "cache"
    ) as reg:
        reg.push_base_model(base_dir, "tiny-llama")
        reg.push_dataset(dataset, "chat")
        yield reg


def test_builtins_are_listed_everywhere_and_read_only(registry_server, admin_api, anon_api):
    assert admin_api.post("/v1/namespaces", json={"name": "team"}).status_code == 201
    for api, query in ((anon_api, {}), (admin_api, {"namespace": "team"})):
        listed = _all(api, "/v1/presets", **query)
        assert [(p["name"], p["builtin"], p["namespace"]) for p in listed] == [
            ("small", True, None),
            ("medium", True, None),
            ("large", True, None),
            ("xlarge", True, None),
        ]
        assert [p["params"] for p in listed] == [
            {"r": 4, "lora_alpha": 8},
            {"r": 8, "lora_alpha": 16},
            {"r": 16, "lora_alpha": 32},
            {"r": 32, "lora_alpha": 64},
        ]
    assert anon_api.get("/v1/presets/large").json()["params"] == {"r": 16, "lora_alpha": 32}
    for answer in (
        _save(admin_api, "small", {"r": 2, "lora_alpha": 4}),
        admin_api.delete("/v1/presets/large"),
    ):
        assert answer.status_code == 409, answer.text
        assert "built in and read-only" in _error(answer)["message"]
    assert anon_api.get("/v1/presets/small").json()["params"] == {"r": 4, "lora_alpha": 8}


def test_a_namespaces_presets_are_saved_listed_shown_and_deleted(
    registry_server, admin_api, anon_api
):
    created = _save(admin_api, "clinical", CLINICAL)
    assert created.status_code == 201, created.text
    view = created.json()
    assert (view["name"], view["namespace"], view["builtin"]) == ("clinical", "default", False)
    assert view["params"] == CLINICAL and view["created_by"] == "admin"
    replaced = admin_api.put(
        "/v1/presets/clinical",
        json={"params": {**CLINICAL, "r": 8}, "description": "smaller"},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["params"]["r"] == 8 and replaced.json()["description"] == "smaller"
    assert _save(admin_api, "radiology", {"r": 4, "lora_alpha": 4.5}).status_code == 201
    shown = anon_api.get("/v1/presets/clinical").json()
    assert shown["params"] == {**CLINICAL, "r": 8}
    # pages of 3: four built-ins, then the namespace's presets oldest first, none twice
    pages = []
    query: dict = {"limit": 3}
    while True:
        page = anon_api.get("/v1/presets", params=query).json()
        pages.append([p["name"] for p in page["items"]])
        if page["next_cursor"] is None:
            break
        query["cursor"] = page["next_cursor"]
    assert pages == [["small", "medium", "large"], ["xlarge", "clinical", "radiology"]]
    bad = anon_api.get("/v1/presets", params={"limit": 3, "cursor": "x.y"})
    assert bad.status_code == 400 and _error(bad)["code"] == "invalid_cursor"
    deleted = admin_api.delete("/v1/presets/radiology")
    assert deleted.status_code == 200 and deleted.json()["params"] == {"r": 4, "lora_alpha": 4.5}
    assert anon_api.get("/v1/presets/radiology").status_code == 404
    assert admin_api.delete("/v1/presets/radiology").status_code == 404
    rows = admin_api.get("/v1/audit", params={"target": "clinical"}).json()["items"]
    assert [r["action"] for r in rows] == ["preset.save", "preset.save"]
    assert rows[0]["detail"]["before"]["params"] == CLINICAL
    assert rows[0]["detail"]["after"]["params"] == {**CLINICAL, "r": 8}
    assert rows[1]["detail"]["before"] is None
    deletion = admin_api.get("/v1/audit", params={"action": "preset.delete"}).json()["items"]
    assert deletion[0]["detail"]["after"] is None


def test_presets_are_checked_like_train_params_and_scoped(registry_server, admin_api, anon_api):
    for params, words in (
        ({"r": 0, "lora_alpha": 8}, "params.r = 0 is out of range [1, 4096]"),
        ({"r": 4}, "a preset needs params.lora_alpha"),
        ({"r": 4, "lora_alpha": 8, "dataset": "chat"}, "unknown params for a preset: dataset"),
        ({"r": 4, "lora_alpha": 8, "lr": 2.0}, "params.lr = 2.0 is out of range"),
        ({"r": 4, "lora_alpha": 8, "target_modules": []}, "params.target_modules"),
        ({"r": 4.5, "lora_alpha": 8}, "params.r must be an integer"),
    ):
        r = _save(admin_api, "bad", params)
        assert r.status_code == 422, (params, r.text)
        assert _error(r)["code"] == "invalid_preset" and words in _error(r)["message"], r.text
    assert _save(admin_api, "Bad Name", {"r": 4, "lora_alpha": 8}).status_code == 422
    assert _save(anon_api, "mine", {"r": 4, "lora_alpha": 8}).status_code == 401
    token = admin_api.post(
        "/v1/tokens", json={"name": "ro", "grants": [{"namespace": "default", "scope": "read"}]}
    ).json()["token"]
    refused = admin_api.put(
        "/v1/presets/mine",
        json={"params": {"r": 4, "lora_alpha": 8}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 403, refused.text
    assert admin_api.post("/v1/namespaces", json={"name": "hidden", "private": True}).is_success
    assert _save(admin_api, "secret", {"r": 4, "lora_alpha": 8}, namespace="hidden").is_success
    assert anon_api.get("/v1/presets", params={"namespace": "hidden"}).status_code == 404
    assert anon_api.get("/v1/presets/secret", params={"namespace": "hidden"}).status_code == 404
    assert anon_api.get("/v1/presets/secret").status_code == 404  # not in default
    assert admin_api.get("/v1/presets", params={"namespace": "nowhere"}).status_code == 404
    assert (
        admin_api.get("/v1/audit", params={"action": "preset.save"}).json()["items"][0]["namespace"]
        == "hidden"
    )


def _train(api: httpx.Client, **params) -> httpx.Response:
    body = {
        "type": "train",
        "params": {"base_model": "tiny-llama", "dataset": "chat", **params},
        "output": "nurse",
    }
    return api.post("/v1/jobs", json=body)


def test_a_train_job_gets_a_copy_of_its_preset(registry_server, admin_api, trainable):
    assert _save(admin_api, "clinical", CLINICAL).status_code == 201
    submitted = _train(admin_api, preset="clinical", steps=3)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    # the preset's values, under the job's own (steps=3 beats the preset's 10)
    assert job["params"] == {
        "base_model": "tiny-llama",
        "dataset": "default/chat-v1",
        "preset": "clinical",
        **CLINICAL,
        "steps": 3,
    }
    assert _save(admin_api, "clinical", {"r": 2, "lora_alpha": 2}).status_code == 200
    again = admin_api.get(f"/v1/jobs/{job['id']}").json()
    assert again["params"] == job["params"]  # a later change of the preset changes nothing
    later = _train(admin_api, preset="clinical").json()
    assert (later["params"]["r"], later["params"]["lora_alpha"]) == (2, 2)
    assert "target_modules" not in later["params"]

    builtin = _train(admin_api, preset="large").json()
    assert (builtin["params"]["r"], builtin["params"]["lora_alpha"]) == (16, 32)
    default = _train(admin_api).json()
    assert default["params"]["preset"] == "small"
    assert (default["params"]["r"], default["params"]["lora_alpha"]) == (4, 8)
    own_rank = _train(admin_api, preset="large", r=2).json()
    assert (own_rank["params"]["r"], own_rank["params"]["lora_alpha"]) == (2, 32)

    unknown = _train(admin_api, preset="nope")
    assert unknown.status_code == 422 and _error(unknown)["code"] == "invalid_job"
    assert "params.preset 'nope'" in _error(unknown)["message"], unknown.text
    assert admin_api.post("/v1/namespaces", json={"name": "team"}).status_code == 201
    elsewhere = admin_api.post(
        "/v1/jobs",
        json={
            "type": "train",
            "namespace": "team",
            "params": {"base_model": "tiny-llama", "dataset": "default/chat", "preset": "clinical"},
            "output": "nurse",
        },
    )
    assert elsewhere.status_code == 422 and "namespace 'team'" in elsewhere.text, elsewhere.text
    submitted_rows = admin_api.get("/v1/audit", params={"action": "job.submit"}).json()["items"]
    assert submitted_rows[-1]["detail"]["after"]["params"]["r"] == 16
