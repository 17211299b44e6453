"""Merge and train jobs end to end in-process: REST submission, ``run_job``, SDK pulls.

Checked against the math and the documented formats, not the worker code:
the merged base model's logits equal PEFT's base-plus-adapter logits; a trained
adapter's card metrics are recomputed from the pulled adapter on the documented
chat format (UTF-8 bytes, assistant tokens only); lineage names the dataset, the
base model and the parent adapter.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch

import loreg
from tests.support.tiny import TINY_LLAMA, byte_ids, tiny_llama
from tests.support.waiting import wait_until
from workers.runner import run_job

CHATS = [
    {"system": "Answer briefly.", "conversation": [{"human": "2+2?", "assistant": "4"}]},
    {"conversation": [{"human": "capital of France?", "assistant": "Paris"}]},
    {
        "conversation": [
            {"human": "fever", "assistant": "rest"},
            {"human": "cough", "assistant": "a doctor"},
        ]
    },
    {"conversation": [{"human": "hello", "assistant": "hello, how can I help?"}]},
]
TRAIN_PARAMS = {"steps": 4, "lr": 1e-2, "seed": 0, "max_length": 64, "batch_size": 4}


@pytest.fixture
def registry_settings_overrides() -> dict:
    """Frequent heartbeats, so a cancellation reaches a running job quickly."""
    return {"job_heartbeat_s": 0.1}


class _NoDispatch:
    """Keeps submitted jobs queued: the test runs them in-process with ``run_job``."""

    def enqueue(self, job_id: str, queue: str) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory) -> Path:
    """A chat JSONL file with four conversations."""
    path = tmp_path_factory.mktemp("dataset") / "chat.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    return path


@pytest.fixture(scope="module")
def sharded_base_dir(tmp_path_factory) -> Path:
    """The tiny Llama base (same weights as ``base_dir``) in four shards plus an index."""
    folder = tmp_path_factory.mktemp("sharded-base")
    tiny_llama(0).save_pretrained(folder, max_shard_size="100KB")
    assert len(list(folder.glob("*.safetensors"))) == 4
    return folder


@pytest.fixture
def registry(registry_server, base_dir, adapter_dir, tmp_path):
    """An SDK client on a registry holding the tiny base and ``medical-v1``."""
    registry_server.ctx._dispatcher = _NoDispatch()
    with loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "cache",
        progress=False,
    ) as reg:
        reg.push_base_model(base_dir, "tiny-llama")
        reg.push(adapter_dir, "medical", base_model="tiny-llama")
        yield reg


def run(registry_server, reg, body: dict) -> dict:
    """Submit a job over REST, run it in-process; returns its final view."""
    job = reg.api.post("/v1/jobs", body)
    assert job["status"] == "queued"
    status = run_job(registry_server.ctx, job["id"])
    assert status == "succeeded", reg.api.get(f"/v1/jobs/{job['id']}/logs")
    return reg.api.get(f"/v1/jobs/{job['id']}")


def causal_lm(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(folder), local_files_only=True, dtype=torch.float32
    ).eval()


def lineage_parents(lineage: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((e["relation"], e["parent"]["kind"], e["parent"]["ref"]) for e in lineage)


# --------------------------------------------------------------------------- merge


def test_merged_model_logits_equal_base_plus_adapter(
    registry_server, registry, sharded_base_dir, adapter_dir
):
    from peft import PeftModel

    registry.push_base_model(sharded_base_dir, "tiny-llama-sharded")
    registry.push(adapter_dir, "nurse", base_model="tiny-llama-sharded")
    body = {"type": "merge", "inputs": [{"ref": "nurse-v1"}], "output": "tiny-llama-nurse"}
    job = run(registry_server, registry, body)
    assert job["result"]["kind"] == "base_model"
    assert job["result"]["ref"] == "tiny-llama-nurse"

    folder = registry.pull_base_model("tiny-llama-nurse")
    shards = sorted(p.name for p in sharded_base_dir.glob("*.safetensors"))
    assert sorted(p.name for p in folder.glob("*.safetensors")) == shards  # shard by shard
    ids = byte_ids("the patient reports a mild fever")
    with torch.no_grad():
        merged = causal_lm(folder)(ids).logits
        base = causal_lm(sharded_base_dir)(ids).logits
        with_adapter = PeftModel.from_pretrained(causal_lm(sharded_base_dir), str(adapter_dir))
        expected = with_adapter.eval()(ids).logits
    torch.testing.assert_close(merged, expected, atol=1e-4, rtol=0)
    assert (merged - base).abs().max() > 1e-2

    for side_file in ("config.json", "generation_config.json", "model.safetensors.index.json"):
        assert (folder / side_file).read_bytes() == (sharded_base_dir / side_file).read_bytes()
    assert "default/nurse-v1" in (folder / "README.md").read_text()
    view = registry.api.get("/v1/base-models/tiny-llama-nurse")
    assert lineage_parents(view["lineage"]) == [
        ("merged_into", "base_model", "tiny-llama-sharded"),
        ("merged_into", "version", "default/nurse-v1"),
    ]
    n_modules = 2 * TINY_LLAMA["num_hidden_layers"]  # q_proj and v_proj in every layer
    roles = {e["params"]["role"]: e["params"] for e in view["lineage"]}
    assert roles == {
        "adapter": {"method": "merge", "modules_merged": n_modules, "role": "adapter"},
        "base": {"method": "merge", "modules_merged": n_modules, "role": "base"},
    }
    card = view["metadata"]["card"]  # the merge card, through the API (not only README.md)
    assert card["type"] == "merge" and card["adapter"] == "default/nurse-v1"
    assert card["base_model"] == "tiny-llama-sharded" and card["modules_merged"] == n_modules
    assert card["shards"] == shards and card["size_bytes"] > 0
    assert registry.api.get("/v1/base-models/tiny-llama-sharded")["lineage"] == []


# --------------------------------------------------------------------------- train


def assistant_only_loss(model, chats: list[dict]) -> float:
    """Mean next-token CE over assistant tokens, formatted as the train job documents."""
    total = count = 0.0
    for chat in chats:
        ids: list[int] = []
        trained: list[bool] = []
        parts = [(f"{chat['system']}\n\n", False)] if chat.get("system") else []
        for turn in chat["conversation"]:
            parts += [(f"Human: {turn['human']}\nAssistant: ", False), (turn["assistant"], True)]
            parts.append(("\n", True))
        for text, is_answer in parts:
            data = [b % TINY_LLAMA["vocab_size"] for b in text.encode()]
            ids += data
            trained += [is_answer] * len(data)
        assert len(ids) <= TRAIN_PARAMS["max_length"]  # no truncation to account for
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1]
        targets = torch.tensor(ids[1:])
        mask = torch.tensor(trained[1:])
        losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        total += float(losses[mask].sum())
        count += int(mask.sum())
    return total / count


def lora_parameter_count(r: int) -> int:
    """(d + k) * r over q, k, v, o of every layer of the tiny Llama."""
    hidden = TINY_LLAMA["hidden_size"]
    kv = TINY_LLAMA["num_key_value_heads"] * hidden // TINY_LLAMA["num_attention_heads"]
    per_layer = (hidden + hidden) + (hidden + kv) + (hidden + kv) + (hidden + hidden)
    return per_layer * r * TINY_LLAMA["num_hidden_layers"]


def test_train_from_pushed_dataset_then_continue(registry_server, registry, base_dir, dataset_file):
    from peft import PeftModel

    pushed = registry.push_dataset(dataset_file, "chat", description="tiny chats")
    assert pushed.ref == "default/chat-v1" and pushed.created
    assert registry.resolve("chat")["summary"]["records"] == len(CHATS)

    params = {"base_model": "tiny-llama", "dataset": "chat", "preset": "small", **TRAIN_PARAMS}
    params["eval_fraction"] = 0.0  # evaluate on the training set: recomputable below
    job = run(registry_server, registry, {"type": "train", "params": params, "output": "nurse"})
    ref = job["result"]["ref"]
    assert ref == "default/nurse-v1"

    resolved = registry.resolve(ref)
    card = resolved["metadata"]["card"]
    assert (card["r"], card["lora_alpha"], card["steps"]) == (4, 8, 4)
    assert card["dataset"] == "default/chat-v1" and card["eval_split"] == "train"
    assert card["parameter_count"] == lora_parameter_count(4)
    assert resolved["summary"]["parameter_count"] == card["parameter_count"]
    assert math.isfinite(card["train_loss_first"]) and math.isfinite(card["train_loss_last"])
    assert card["perplexity"] == pytest.approx(math.exp(card["eval_loss"]), rel=1e-9)
    assert "byte-level" in card["tokenizer"]

    trained = PeftModel.from_pretrained(causal_lm(base_dir), str(registry.pull(ref))).eval()
    assert card["eval_loss"] == pytest.approx(assistant_only_loss(trained, CHATS), rel=1e-4)
    base_loss = assistant_only_loss(causal_lm(base_dir), CHATS)
    assert card["eval_loss_before"] == pytest.approx(base_loss, rel=1e-4)
    assert card["eval_loss"] < base_loss
    assert lineage_parents(resolved["lineage"]) == [
        ("trained_from", "base_model", "tiny-llama"),
        ("trained_from", "version", "default/chat-v1"),
    ]

    params = {"base_model": "tiny-llama", "dataset": "chat-v1", "continue_from": ref}
    params.update(TRAIN_PARAMS, eval_fraction=0.0, lr=1e-3)
    job = run(registry_server, registry, {"type": "train", "params": params, "output": "nurse"})
    child = registry.resolve(job["result"]["ref"])
    assert child["version"] == 2
    assert lineage_parents(child["lineage"]) == [
        ("continued_from", "version", "default/nurse-v1"),
        ("trained_from", "base_model", "tiny-llama"),
        ("trained_from", "version", "default/chat-v1"),
    ]
    child_card = child["metadata"]["card"]
    assert child_card["continued_from"] == "default/nurse-v1"
    # the run started from the parent's weights: its first evaluation is the parent's last
    assert child_card["eval_loss_before"] == pytest.approx(card["eval_loss"], rel=1e-5)


def test_train_with_unknown_target_modules_fails_with_the_reason(
    registry_server, registry, dataset_file
):
    registry.push_dataset(dataset_file, "chat")
    params = {"base_model": "tiny-llama", "dataset": "chat", "target_modules": ["nope_proj"]}
    job = registry.api.post("/v1/jobs", {"type": "train", "params": params, "output": "x"})
    assert run_job(registry_server.ctx, job["id"]) == "failed"
    view = registry.job(job["id"])
    assert "nope_proj" in view["error"] and view["attempts"] == 1 and view["result"] is None


def test_cancel_reaches_a_running_train_job(registry_server, registry, dataset_file):
    registry.push_dataset(dataset_file, "chat")
    params = {"base_model": "tiny-llama", "dataset": "chat", **TRAIN_PARAMS, "steps": 100_000}
    job = registry.api.post("/v1/jobs", {"type": "train", "params": params, "output": "long"})
    outcome: dict[str, str] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(status=run_job(registry_server.ctx, job["id"])), daemon=True
    )
    worker.start()

    def training() -> bool:
        if registry.job(job["id"])["progress"] > 0.1:  # a training step was reported
            return True
        assert worker.is_alive(), registry.job(job["id"])
        return False

    wait_until(training, timeout=60, message=lambda: registry.job(job["id"]))
    registry.cancel_job(job["id"])
    worker.join(timeout=60)
    assert outcome.get("status") == "cancelled"
    view = registry.job(job["id"])
    assert view["status"] == "cancelled" and view["result"] is None
    assert "step" in registry.job_logs(job["id"])
    assert all(a["name"] != "long" for a in registry.list())


# ------------------------------------------------------------------------ datasets


def test_dataset_push_cli_and_validation(registry_server, registry, tmp_path, monkeypatch, capsys):
    from loreg.cli import main
    from loreg.errors import LoregError

    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cli-cache"))
    folder = tmp_path / "chats"
    folder.mkdir()
    (folder / "part-1.jsonl").write_text(json.dumps(CHATS[0]) + "\n")
    (folder / "part-2.jsonl").write_text(json.dumps(CHATS[1]) + "\n" + json.dumps(CHATS[2]))
    server = ["--url", registry_server.url, "--token", registry_server.admin_token]
    argv = ["dataset", "push", str(folder), "--name", "chats", "--json", *server]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["ref"] == "default/chats-v1"
    summary = registry.resolve("chats-v1")["summary"]
    assert summary["records"] == 3
    assert summary["files"] == {"part-1.jsonl": 1, "part-2.jsonl": 2}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(CHATS[0]) + "\n" + json.dumps({"conversation": [{"human": "x"}]}))
    with pytest.raises(LoregError, match=r"bad.jsonl line 2.*assistant"):
        registry.push_dataset(bad, "bad")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LoregError, match=r"no \.jsonl file"):
        registry.push_dataset(tmp_path / "notes.txt", "notes")
    manifest = [{"path": "notes.txt", "size": 5, "sha256": "0" * 64}]
    with pytest.raises(LoregError, match=r"dataset needs at least one \.jsonl"):
        registry.api.post("/v1/uploads", {"kind": "dataset", "name": "notes", "files": manifest})
    assert main(["dataset", "push", str(tmp_path / "missing.jsonl"), "--name", "x", *server]) != 0
    assert "does not exist" in capsys.readouterr().err
