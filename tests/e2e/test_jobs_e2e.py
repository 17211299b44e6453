"""Jobs end to end against a real ``loreg serve`` (embedded executor in a child process).

Through REST and the CLI: push a base model and a dataset, train an adapter,
combine it with another (ties, weighted), compress the result, merge it into the
base; then walk the final base model's lineage back to the dataset and the base.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
from safetensors import safe_open

from tests.e2e.conftest import run_cli
from tests.support.tiny import save_adapter, save_base_model
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

BASE = "tiny-llama"
MERGED = "tiny-llama-notes"
RECORDS = [  # short: the tiny model has 64 positions
    {
        "system": "Be brief.",
        "conversation": [{"human": f"fever {i}?", "assistant": "rest, fluids."}],
    }
    for i in range(12)
]


def cli_json(served, cache: Path, *args: str) -> dict | list:
    """Run ``loreg ARGS --json`` and decode its stdout."""
    return json.loads(run_cli(served, cache, *args, "--json").stdout)


def rest_wait(api: httpx.Client, job_id: str, timeout: float = 90) -> dict:
    """Poll ``GET /v1/jobs/{id}`` until the job is terminal."""

    def terminal() -> dict | None:
        job = api.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(
        terminal,
        timeout=timeout,
        interval=0.2,
        message=lambda: f"job not finished: {api.get(f'/v1/jobs/{job_id}').json()}",
    )


def module_paths(folder: Path) -> list[str]:
    """The module paths an adapter folder targets (from its tensor names)."""
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
    prefix, suffix = "base_model.model.", ".lora_A.weight"
    return sorted(k[len(prefix) : -len(suffix)] for k in keys if k.endswith(suffix))


def parents(view: dict) -> dict[str, list[dict]]:
    """``{relation: [edge, ...]}`` of a resolve / base-model view's lineage."""
    out: dict[str, list[dict]] = {}
    for edge in view["lineage"]:
        out.setdefault(edge["relation"], []).append(edge)
    return out


def test_train_combine_compress_merge_through_rest_and_cli(served, tmp_path):
    cache = tmp_path / "cache"
    api = httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.token}"}, timeout=60
    )

    # -- inputs: a base model and a chat dataset, pushed with the CLI
    base = cli_json(served, cache, "base", "push", str(save_base_model(tmp_path / "base")),
                    "--name", BASE)  # fmt: skip
    assert base["name"] == BASE
    data = tmp_path / "notes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    dataset = cli_json(served, cache, "dataset", "push", str(data), "--name", "notes")
    assert dataset["ref"] == "default/notes-v1"

    # -- train with the CLI, waiting for it (--wait --json)
    trained = cli_json(
        served, cache, "job", "submit", "train",
        "--param", f"base_model={BASE}", "--param", "dataset=notes-v1",
        "--param", "preset=small", "--param", "steps=4", "--param", "max_length=64",
        "--seed", "0", "--output", "notes-adapter", "--wait",
    )  # fmt: skip
    assert trained["status"] == "succeeded", trained
    trained_ref = trained["result"]["ref"]
    assert trained_ref == "default/notes-adapter-v1"

    # -- a second adapter on the same modules, pushed with the CLI
    targets = module_paths(Path(run_cli(served, cache, "pull", trained_ref).stdout.strip()))
    other = save_adapter(tmp_path / "other", seed=5, r=4, targets=targets)
    pushed = cli_json(served, cache, "push", str(other), "--name", "style", "--base-model", BASE)
    assert pushed["ref"] == "default/style-v1"

    # -- combine over REST; follow it with `loreg job status` and `loreg job logs`
    answer = api.post(
        "/v1/jobs",
        json={
            "type": "combine",
            "inputs": [{"ref": trained_ref, "weight": 0.7}, {"ref": "style-v1", "weight": 0.3}],
            "params": {"method": "ties", "density": 0.5, "rank": 4, "seed": 0},
            "output": "notes-style",
        },
    )
    assert answer.status_code == 202, answer.text
    combine_id = answer.json()["id"]
    assert rest_wait(api, combine_id)["status"] == "succeeded"
    status = cli_json(served, cache, "job", "status", combine_id)
    assert status["status"] == "succeeded" and status["progress"] == 1.0
    combined_ref = status["result"]["ref"]
    human = run_cli(served, cache, "job", "status", combine_id).stdout
    assert f"result: {combined_ref}" in human
    logs = run_cli(served, cache, "job", "logs", combine_id).stdout
    assert "combined 2 adapters with ties" in logs

    # -- compress with the CLI (--wait), then merge over REST
    compressed = cli_json(
        served, cache, "job", "submit", "compress", "--input", f"{combined_ref}:1.0",
        "--rank", "2", "--output", "notes-style-r2", "--wait",
    )  # fmt: skip
    assert compressed["status"] == "succeeded", compressed
    compressed_ref = compressed["result"]["ref"]
    merge = api.post(
        "/v1/jobs",
        json={"type": "merge", "inputs": [{"ref": compressed_ref}], "output": MERGED},
    )
    assert merge.status_code == 202, merge.text
    merged = rest_wait(api, merge.json()["id"])
    assert merged["status"] == "succeeded", merged
    assert merged["result"]["ref"] == MERGED

    # -- `loreg job ls` lists the four jobs, all succeeded
    listed = cli_json(served, cache, "job", "ls", "--status", "succeeded")
    assert {j["type"] for j in listed} == {"train", "combine", "compress", "merge"}
    table = run_cli(served, cache, "job", "ls").stdout
    assert combine_id in table and "succeeded" in table

    # -- walk the lineage: merged base <- compressed <- combined <- trained <- dataset/base
    merged_view = api.get(f"/v1/base-models/{MERGED}").raise_for_status().json()
    step = parents(merged_view)["merged_into"]
    assert sorted((e["parent"]["kind"], e["parent"]["ref"]) for e in step) == [
        ("base_model", BASE),
        ("version", compressed_ref),
    ]

    compressed_view = api.get(f"/v1/resolve/{compressed_ref}").json()
    step = parents(compressed_view)["compressed_from"]
    assert [e["parent"]["ref"] for e in step] == [combined_ref]
    assert step[0]["params"] == {"method": "rank", "rank": 2}
    assert compressed_view["metadata"]["card"]["rank"] == 2

    combined_view = api.get(f"/v1/resolve/{combined_ref}").json()
    step = parents(combined_view)["combined_from"]
    assert {e["parent"]["ref"]: e["params"]["weight"] for e in step} == {
        trained_ref: 0.7,
        "default/style-v1": 0.3,
    }
    assert all(e["params"]["method"] == "ties" and e["params"]["density"] == 0.5 for e in step)

    trained_view = api.get(f"/v1/resolve/{trained_ref}").json()
    step = parents(trained_view)["trained_from"]
    assert {(e["parent"]["kind"], e["parent"]["ref"]) for e in step} == {
        ("version", "default/notes-v1"),
        ("base_model", BASE),
    }
    card = trained_view["metadata"]["card"]
    assert card["steps"] == 4 and card["dataset"] == "default/notes-v1"
    assert card["perplexity"] == pytest.approx(math.exp(card["eval_loss"]))

    # -- the same chain in one call: `loreg lineage` lists every step back to the roots
    ancestry = cli_json(served, cache, "lineage", MERGED, "--base-model")
    assert ancestry["root"]["ref"] == MERGED and ancestry["truncated"] is False
    steps = sorted(
        (e["child"]["ref"], e["relation"], e["parent"]["kind"], e["parent"]["ref"])
        for e in ancestry["edges"]
    )
    assert steps == sorted(
        [
            (MERGED, "merged_into", "base_model", BASE),
            (MERGED, "merged_into", "version", compressed_ref),
            (compressed_ref, "compressed_from", "version", combined_ref),
            (combined_ref, "combined_from", "version", trained_ref),
            (combined_ref, "combined_from", "version", "default/style-v1"),
            (trained_ref, "trained_from", "version", "default/notes-v1"),
            # every adapter version pushed against a registered base records it
            (trained_ref, "trained_from", "base_model", BASE),
            ("default/style-v1", "trained_from", "base_model", BASE),
            (combined_ref, "trained_from", "base_model", BASE),
            (compressed_ref, "trained_from", "base_model", BASE),
        ]
    )
    weights = {
        e["parent"]["ref"]: e["params"]["weight"]
        for e in ancestry["edges"]
        if e["relation"] == "combined_from"
    }
    assert weights == {trained_ref: 0.7, "default/style-v1": 0.3}
    tree = run_cli(served, cache, "lineage", compressed_ref).stdout
    assert f"{compressed_ref} <-compressed_from- {combined_ref}" in tree
    assert f"{trained_ref} <-trained_from- base model {BASE}" in tree
    api.close()


def test_an_invalid_job_fails_fast_with_a_clear_message(served, tmp_path):
    cache = tmp_path / "cache"
    missing = run_cli(
        served, cache, "job", "submit", "compress", "--input", "nothing-here",
        "--rank", "2", "--output", "x", check=False,
    )  # fmt: skip
    assert missing.returncode == 3, missing.stderr
    assert missing.stderr.startswith("error: ") and "nothing-here" in missing.stderr

    run_cli(served, cache, "push", str(save_adapter(tmp_path / "a", r=4)), "--name", "four")
    too_big = run_cli(
        served, cache, "job", "submit", "compress", "--input", "four-v1",
        "--rank", "99", "--output", "x", "--wait", check=False,
    )  # fmt: skip
    assert too_big.returncode == 5, too_big.stderr
    assert "params.rank 99 is above the input's rank 4" in too_big.stderr
