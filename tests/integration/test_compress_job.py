"""Compress jobs end to end in-process: REST submission, ``run_job``, the published result.

Checked against the math, not against the ops code: the rank-reduction error
against a dense float64 SVD of the original deltas, fp16 against the byte count
of the stored tensors, int8 against a model whose weights were updated by hand
with the dequantized factors read from the pulled files. The int8 storage format
is also checked at the registry's validator.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

import loreg
from registry.errors import InvalidConfig
from registry.validation.peft_config import INT8_FORMAT, validate_lora_config
from registry.validation.safetensors_header import parse_safetensors_bytes
from tests.support.tiny import byte_ids, tiny_llama
from workers.runner import run_job

F64 = torch.float64
PREFIX = "base_model.model."
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


class _NoDispatch:
    """Keeps submitted jobs queued: the test runs them in-process with ``run_job``."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def enqueue(self, job_id: str, queue: str) -> None:
        self.sent.append(job_id)

    def close(self) -> None:
        pass


@pytest.fixture
def registry(registry_server, base_dir, adapter_dir, tmp_path):
    """An SDK client on a registry holding the tiny base and ``medical-v1`` (r=4, fp32)."""
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


def run_compress(registry_server, reg, params: dict, ref: str = "medical-v1") -> dict:
    """Submit a compress job over REST, run it in-process; returns the job's final view."""
    body = {"type": "compress", "inputs": [{"ref": ref}], "params": params, "output": "small"}
    job = reg.api.post("/v1/jobs", body)
    assert job["status"] == "queued"
    assert run_job(registry_server.ctx, job["id"]) == "succeeded", reg.api.get(
        f"/v1/jobs/{job['id']}/logs"
    )
    return reg.api.get(f"/v1/jobs/{job['id']}")


def read_deltas(folder: Path) -> dict[str, torch.Tensor]:
    """Dense fp64 deltas ``alpha/r · B @ A`` of a plain PEFT adapter folder (no patterns)."""
    config = json.loads((folder / CONFIG).read_text())
    assert not config.get("rank_pattern") and not config.get("alpha_pattern")
    assert not config.get("use_rslora")
    tensors = load_file(str(folder / WEIGHTS))
    scale = config["lora_alpha"] / config["r"]
    out = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            out[key[len(PREFIX) : -len(".lora_A.weight")]] = scale * (b.to(F64) @ a.to(F64))
    return out


def module_deltas(folder: Path) -> dict[str, torch.Tensor]:
    """Dense fp64 deltas of a result folder, honouring per-module rank/alpha patterns."""
    config = json.loads((folder / CONFIG).read_text())
    tensors = load_file(str(folder / WEIGHTS))
    out = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            path = key[len(PREFIX) : -len(".lora_A.weight")]
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            r = config["rank_pattern"].get(path, config["r"])
            alpha = config["alpha_pattern"].get(path, config["lora_alpha"])
            assert a.shape[0] == r
            out[path] = alpha / r * (b.to(F64) @ a.to(F64))
    return out


def card_of(reg, ref: str) -> dict:
    return reg.resolve(ref)["metadata"]["card"]


# --------------------------------------------------------------------------- rank


@pytest.mark.parametrize("params", [{"rank": 2}, {"energy": 0.8}], ids=["rank", "energy"])
def test_rank_reduction_error_is_the_dropped_singular_values(
    registry_server, registry, adapter_dir, params
):
    job = run_compress(registry_server, registry, params)
    ref = job["result"]["ref"]
    assert ref.endswith("/small-v1")
    original = read_deltas(adapter_dir)
    total = dropped = 0.0
    ranks = {}
    for path, delta in original.items():
        power = torch.linalg.svdvals(delta) ** 2  # dense fp64 SVD
        if "rank" in params:
            keep = params["rank"]
        else:
            fractions = torch.cumsum(power, 0) / power.sum()
            keep = int((fractions < params["energy"] - 1e-12).sum()) + 1
        ranks[path] = keep
        total += float(power.sum())
        dropped += float(power[keep:].sum())
    assert 0 < dropped < total

    card = card_of(registry, ref)
    assert card["method"] == next(iter(params))
    assert card["relative_error"] == pytest.approx(math.sqrt(dropped / total), rel=1e-6)
    assert card["energy_kept"] == pytest.approx(1 - dropped / total, rel=1e-9)
    assert card["parent"]["ref"] == "default/medical-v1"

    folder = registry.pull(ref)
    stored = module_deltas(folder)
    assert set(stored) == set(original)
    error2 = sum(float(torch.linalg.norm(stored[p] - original[p]) ** 2) for p in original)
    assert error2 == pytest.approx(dropped, rel=1e-4)
    tensors = load_file(str(folder / WEIGHTS))
    for path, keep in ranks.items():
        assert tensors[f"{PREFIX}{path}.lora_A.weight"].shape[0] == keep
        assert tensors[f"{PREFIX}{path}.lora_B.weight"].shape[1] == keep
    assert card["rank"] == max(ranks.values())
    expected_params = sum(keep * sum(original[p].shape) for p, keep in ranks.items())
    assert card["parameter_count"] == expected_params

    lineage = registry.resolve(ref)["lineage"]
    edge = next(e for e in lineage if e["relation"] == "compressed_from")
    assert edge["parent"]["ref"] == "default/medical-v1"
    assert edge["params"] == {"method": card["method"], **params}
    assert any(
        e["relation"] == "trained_from" and e["parent"] == {**e["parent"], "ref": "tiny-llama"}
        for e in lineage
    )


# --------------------------------------------------------------------------- fp16


def test_fp16_halves_the_weights(registry_server, registry, adapter_dir):
    job = run_compress(registry_server, registry, {"precision": "fp16"})
    folder = registry.pull(job["result"]["ref"])
    before = parse_safetensors_bytes((adapter_dir / WEIGHTS).read_bytes())
    after = parse_safetensors_bytes((folder / WEIGHTS).read_bytes())
    assert {t.dtype for t in before.tensors.values()} == {"F32"}
    assert {t.dtype for t in after.tensors.values()} == {"F16"}
    assert after.data_size * 2 == before.data_size
    assert (folder / WEIGHTS).stat().st_size < 0.6 * (adapter_dir / WEIGHTS).stat().st_size

    original, stored = read_deltas(adapter_dir), module_deltas(folder)
    total = sum(float(torch.linalg.norm(d) ** 2) for d in original.values())
    error2 = sum(float(torch.linalg.norm(stored[p] - original[p]) ** 2) for p in original)
    card = card_of(registry, job["result"]["ref"])
    assert card["size_ratio"] == 0.5
    assert card["relative_error"] == pytest.approx(math.sqrt(error2 / total), rel=1e-3)
    assert 0 < card["relative_error"] < 1e-3  # fp16 keeps ~11 bits


# --------------------------------------------------------------------------- int8


def dequantized(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{module: {"A": ..., "B": ...}}`` as float32 from an int8 folder, by the format's rule."""
    tensors = load_file(str(folder / WEIGHTS))
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, q in tensors.items():
        if key.endswith(".qweight"):
            stem = key[: -len(".qweight")]
            path, factor = stem[len(PREFIX) :].rsplit(".lora_", 1)
            scales = tensors[f"{stem}.scales"]
            assert q.dtype == torch.int8 and scales.dtype == torch.float32
            out.setdefault(path, {})[factor] = q.float() * scales[:, None]
    return out


def test_int8_round_trip_through_pull_and_load(registry_server, registry, adapter_dir, tmp_path):
    job = run_compress(registry_server, registry, {"precision": "int8"})
    ref = job["result"]["ref"]
    folder = registry.pull(ref)
    with safe_open(str(folder / WEIGHTS), framework="pt") as handle:
        assert handle.metadata()["format"] == INT8_FORMAT
    config = json.loads((folder / CONFIG).read_text())
    factors = dequantized(folder)
    source = load_file(str(adapter_dir / WEIGHTS))
    fp32_bytes = sum(t.numel() * 4 for t in source.values())
    int8_bytes = sum(t.numel() + 4 * t.shape[0] for t in source.values())
    card = card_of(registry, ref)
    assert card["size_ratio"] == pytest.approx(int8_bytes / fp32_bytes)
    for path, pair in factors.items():
        for name, value in pair.items():
            original = source[f"{PREFIX}{path}.lora_{name}.weight"]
            step = original.abs().amax(dim=1, keepdim=True) / 127
            assert torch.all((value - original).abs() <= step / 2 + 1e-7)

    # Reference: the base model with W += alpha/r · B A from the dequantized factors.
    ids = byte_ids("compressed adapters still speak")
    base_logits = tiny_llama(0)(ids).logits
    reference = tiny_llama(0)
    scale = config["lora_alpha"] / config["r"]
    with torch.no_grad():
        for path, pair in factors.items():
            weight = reference.get_submodule(path).weight
            weight += scale * pair["B"] @ pair["A"]
        expected = reference(ids).logits
    model = registry.load(tiny_llama(0), ref)
    with torch.no_grad():
        logits = model(ids).logits
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    assert not torch.allclose(logits, base_logits, atol=1e-3)

    # An int8 version is a valid input to another compress job.
    again = run_compress(registry_server, registry, {"rank": 2}, ref=ref)
    stored = module_deltas(registry.pull(again["result"]["ref"]))  # checks ranks vs config
    assert set(stored) == set(factors)
    assert card_of(registry, again["result"]["ref"])["rank"] == 2
    for path, delta in stored.items():
        int8_delta = scale * (factors[path]["B"].to(F64) @ factors[path]["A"].to(F64))
        dropped = float((torch.linalg.svdvals(int8_delta)[2:] ** 2).sum())
        assert float(torch.linalg.norm(delta - int8_delta) ** 2) == pytest.approx(dropped, rel=1e-3)

    # ... and to a combine job: linear with weight 1 reproduces the dequantized deltas.
    body = {
        "type": "combine",
        "inputs": [{"ref": ref, "weight": 1.0}],
        "params": {"method": "linear"},
        "output": "from-int8",
    }
    combined = registry.api.post("/v1/jobs", body)
    assert run_job(registry_server.ctx, combined["id"]) == "succeeded"
    result_ref = registry.api.get(f"/v1/jobs/{combined['id']}")["result"]["ref"]
    for path, delta in module_deltas(registry.pull(result_ref)).items():
        int8_delta = scale * (factors[path]["B"].to(F64) @ factors[path]["A"].to(F64))
        torch.testing.assert_close(delta, int8_delta, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ int8 validation


@pytest.fixture(scope="module")
def int8_files():
    """A valid int8 adapter (two modules, r=2) as (config, tensors, metadata)."""
    gen = torch.Generator().manual_seed(3)
    tensors = {}
    for path in ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"):
        for name, shape in (("A", (2, 64)), ("B", (32, 2))):
            key = f"{PREFIX}{path}.lora_{name}"
            tensors[f"{key}.qweight"] = torch.randint(-127, 128, shape, generator=gen).to(
                torch.int8
            )
            tensors[f"{key}.scales"] = torch.rand(shape[0], generator=gen)
    config = {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 4,
        "target_modules": ["q_proj", "v_proj"],
    }
    return config, tensors, {"format": INT8_FORMAT}


def header_of(tensors, metadata):
    return parse_safetensors_bytes(save(tensors, metadata=metadata))


def test_validator_accepts_the_int8_format(int8_files):
    config, tensors, metadata = int8_files
    header = header_of(tensors, metadata)
    summary = validate_lora_config(config, header.tensors, header.metadata)
    assert set(summary.modules) == {
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
    }
    q = summary.modules["model.layers.0.self_attn.q_proj"]
    assert (q.r, q.in_features, q.out_features) == (2, 64, 32)
    assert summary.parameter_count == sum(t.numel() for t in tensors.values())


def _drop(key):
    return lambda t: {k: v for k, v in t.items() if k != key}


def _replace(key, value):
    return lambda t: {**t, key: value}


Q = f"{PREFIX}model.layers.0.self_attn.q_proj"


@pytest.mark.parametrize(
    "mutate, config_patch, message",
    [
        (_drop(f"{Q}.lora_A.scales"), {}, "has qweight but no scales"),
        (_drop(f"{Q}.lora_B.qweight"), {}, "has scales but no qweight"),
        (_replace(f"{Q}.lora_A.scales", torch.ones(3)), {}, "3 entries but qweight has 2 rows"),
        (_replace(f"{Q}.lora_A.scales", torch.ones(2, 1)), {}, "1-D F32"),
        (_replace(f"{Q}.lora_A.scales", torch.ones(2, dtype=F64)), {}, "1-D F32"),
        (_replace(f"{Q}.lora_A.qweight", torch.ones(2, 64)), {}, "2-D I8"),
        (_replace(f"{Q}.lora_A.weight", torch.ones(2, 64)), {}, "does not belong"),
        (
            _replace(f"{Q}.lora_B.qweight", torch.ones(32, 3, dtype=torch.int8)),
            {},
            "rank 3",
        ),
        (lambda t: t, {"r": 4}, "the config says 4"),
        (lambda t: t, {"target_modules": ["q_proj"]}, "not matched by target_modules"),
    ],
)
def test_validator_refuses_broken_int8_adapters(int8_files, mutate, config_patch, message):
    config, tensors, metadata = int8_files
    header = header_of(mutate(dict(tensors)), metadata)
    with pytest.raises(InvalidConfig, match=message):
        validate_lora_config({**config, **config_patch}, header.tensors, header.metadata)


def test_int8_tensors_without_the_format_metadata_are_refused(int8_files):
    config, tensors, _ = int8_files
    header = header_of(tensors, {"format": "pt"})
    with pytest.raises(InvalidConfig, match="not a LoRA tensor this registry knows"):
        validate_lora_config(config, header.tensors, header.metadata)
