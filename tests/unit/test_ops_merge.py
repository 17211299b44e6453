"""Tests for workers.ops.merge: fold a LoRA adapter into base weights, shard by shard."""

from __future__ import annotations

import pytest
import torch

from tests.support.tiny import byte_ids, make_lora, tiny_llama
from workers.errors import JobInputError
from workers.ops.lora import LoraFactors, split_peft_state_dict
from workers.ops.merge import MergeReport, merge_into_base

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def shards_of(state, count):
    """Split a state dict into ``count`` shards, like model-0000i-of-0000n.safetensors."""
    keys = sorted(state)
    for i in range(count):
        yield f"model-{i + 1:05d}-of-{count:05d}.safetensors", {k: state[k] for k in keys[i::count]}


@pytest.fixture(scope="module")
def adapter_case():
    """A tiny Llama, a real PEFT LoRA on it (random non-zero B, rsLoRA) and its logits."""
    from peft import get_peft_model_state_dict

    ids = byte_ids("merge the adapter into the base, then compare logits")
    with torch.no_grad():
        base_logits = tiny_llama(0)(ids).logits
        peft_model = make_lora(tiny_llama(0), seed=5, r=4, targets=TARGETS, use_rslora=True)
        peft_logits = peft_model(ids).logits
    state = {k: v.detach() for k, v in get_peft_model_state_dict(peft_model).items()}
    modules = split_peft_state_dict(state, peft_model.peft_config["default"].to_dict())
    return ids, base_logits, peft_logits, modules


def test_merged_model_logits_equal_base_plus_adapter(adapter_case):
    ids, base_logits, peft_logits, modules = adapter_case
    base_state = tiny_llama(0).state_dict()
    report = MergeReport()
    merged = {}
    for name, tensors in merge_into_base(shards_of(base_state, 3), modules, report=report):
        assert name.endswith("-of-00003.safetensors")
        merged.update(tensors)
    assert set(merged) == set(base_state)
    assert set(report.merged) == set(modules) and len(modules) == 2 * len(TARGETS)
    assert len(report.shards) == 3
    fresh = tiny_llama(1)  # other weights: everything must come from the merged state
    fresh.load_state_dict(merged)
    with torch.no_grad():
        logits = fresh(ids).logits
    torch.testing.assert_close(logits, peft_logits, atol=1e-4, rtol=0)
    assert float((logits - base_logits).abs().max()) > 1e-2


def test_merge_is_W_plus_scaled_BA_and_leaves_the_input_alone():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 5, generator=gen)
    other = torch.randn(3, generator=gen)
    factors = LoraFactors(torch.randn(2, 5, generator=gen), torch.randn(6, 2, generator=gen), 0.75)
    shard = {"a.proj.weight": weight, "a.norm.weight": other}
    before = weight.clone()
    [(name, out)] = list(merge_into_base([("only", shard)], {"a.proj": factors}, device="cpu"))
    assert name == "only"
    expected = weight.double() + 0.75 * factors.B.double() @ factors.A.double()
    torch.testing.assert_close(out["a.proj.weight"].double(), expected, atol=1e-6, rtol=0)
    assert out["a.norm.weight"] is other
    assert torch.equal(weight, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_weights_are_merged_in_fp32_and_cast_back(dtype):
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(8, 4, generator=gen).to(dtype)
    factors = LoraFactors(torch.randn(3, 4, generator=gen), torch.randn(8, 3, generator=gen), 2.0)
    [(_, out)] = list(merge_into_base([("s", {"m.weight": weight})], {"m": factors}, device="cpu"))
    assert out["m.weight"].dtype == dtype
    expected = (weight.float() + 2.0 * factors.B @ factors.A).to(dtype)
    assert torch.equal(out["m.weight"], expected)


def test_missing_module_is_refused_before_or_after_streaming():
    factors = LoraFactors(torch.ones(1, 2), torch.ones(3, 1), 1.0)
    modules = {"present": factors, "absent": factors}
    shard = [("s", {"present.weight": torch.zeros(3, 2)})]
    with pytest.raises(JobInputError, match="no weight in the base model"):
        merge_into_base(shard, modules, base_keys=["present.weight"])
    stream = merge_into_base(shard, modules, device="cpu")
    assert next(stream)[0] == "s"
    with pytest.raises(JobInputError, match=r"not found in any base shard.*absent"):
        next(stream)


def test_shape_mismatch_and_duplicates_are_refused():
    factors = LoraFactors(torch.ones(1, 2), torch.ones(3, 1), 1.0)
    with pytest.raises(JobInputError, match=r"shape \(2, 3\).*\(3, 2\)"):
        list(merge_into_base([("s", {"m.weight": torch.zeros(2, 3)})], {"m": factors}))
    twice = [("s1", {"m.weight": torch.zeros(3, 2)}), ("s2", {"m.weight": torch.zeros(3, 2)})]
    with pytest.raises(JobInputError, match="appears in shard"):
        list(merge_into_base(twice, {"m": factors}, device="cpu"))
    with pytest.raises(JobInputError, match="only float weights"):
        list(
            merge_into_base(
                [("s", {"m.weight": torch.zeros(3, 2, dtype=torch.int8)})],
                {"m": factors},
                device="cpu",
            )
        )
    with pytest.raises(JobInputError, match="no modules"):
        merge_into_base([], {})
