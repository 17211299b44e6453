"""Base-model module shapes and the adapter-fits-base check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from safetensors.numpy import save as np_save

from registry.errors import InvalidSafetensors
from registry.validation.base_model import (
    check_adapter_fits_base,
    linear_modules,
    linear_modules_of_headers,
)
from registry.validation.peft_config import (
    LoraModuleShape,
    LoraSummary,
    parse_adapter_config,
    validate_lora_config,
)
from registry.validation.safetensors_header import parse_safetensors_bytes

TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
)


def header_of(arrays: dict[str, np.ndarray]):
    return parse_safetensors_bytes(np_save(arrays))


def summary(*modules: LoraModuleShape, fan_in_fan_out: bool = False) -> LoraSummary:
    return LoraSummary(
        r=4,
        lora_alpha=8,
        use_rslora=False,
        target_modules=["x"],
        modules={m.module: m for m in modules},
        parameter_count=0,
        base_model_name_or_path=None,
        fan_in_fan_out=fan_in_fan_out,
    )


def test_linear_modules_keeps_only_2d_weights() -> None:
    header = header_of(
        {
            "model.layers.0.q.weight": np.zeros((64, 32), np.float16),
            "model.layers.0.q.bias": np.zeros((64,), np.float16),
            "model.norm.weight": np.zeros((64,), np.float32),
            "model.embed_tokens.weight": np.zeros((128, 64), np.float32),
            "conv.weight": np.zeros((4, 3, 2, 2), np.float32),
            "rotary.inv_freq": np.zeros((8,), np.float32),
        }
    )
    assert linear_modules(header.tensors) == {
        "model.layers.0.q": [64, 32],
        "model.embed_tokens": [128, 64],
    }


def test_shards_are_merged_and_contradictions_refused() -> None:
    a = header_of({"x.weight": np.zeros((2, 3), np.float32)})
    b = header_of({"y.weight": np.zeros((4, 5), np.float32), "x.weight": np.zeros((2, 3))})
    assert linear_modules_of_headers([a, b]) == {"x": [2, 3], "y": [4, 5]}
    assert linear_modules_of_headers([]) == {}
    c = header_of({"x.weight": np.zeros((3, 2), np.float32)})
    with pytest.raises(InvalidSafetensors, match="'x.weight' appears in two shards"):
        linear_modules_of_headers([a, c])


def test_fits_and_mismatch_messages() -> None:
    base = {
        "model.layers.0.self_attn.q_proj": [64, 64],
        "model.layers.0.self_attn.v_proj": [32, 64],
        "model.embed_tokens": [128, 64],
    }
    good = summary(
        LoraModuleShape("model.layers.0.self_attn.q_proj", 4, 64, 64, "linear"),
        LoraModuleShape("model.layers.0.self_attn.v_proj", 4, 64, 32, "linear"),
        LoraModuleShape("model.embed_tokens", 4, 128, 64, "embedding"),
    )
    assert check_adapter_fits_base(good, base) == []
    bad = summary(
        LoraModuleShape("model.layers.0.self_attn.q_proj", 4, 32, 64, "linear"),
        LoraModuleShape("model.layers.0.self_attn.v_proj", 4, 32, 64, "linear"),
        LoraModuleShape("model.embed_tokens", 4, 256, 64, "embedding"),
        LoraModuleShape("model.layers.9.mlp.up_proj", 4, 64, 128, "linear"),
    )
    assert check_adapter_fits_base(bad, base) == [
        "model.embed_tokens: adapter has 256x64 (num_embeddings x dim), base model has 128x64",
        "model.layers.0.self_attn.q_proj: adapter has 64x32 (out x in), base model has 64x64",
        "model.layers.0.self_attn.v_proj: adapter has 64x32 (out x in), base model has 32x64",
        "model.layers.9.mlp.up_proj: not in base model "
        "(no 2-D 'model.layers.9.mlp.up_proj.weight')",
    ]


def test_fan_in_fan_out_compares_transposed() -> None:
    base = {"transformer.h.0.attn.c_attn": [768, 2304]}  # GPT-2 Conv1D stores [in, out]
    module = LoraModuleShape("transformer.h.0.attn.c_attn", 8, 768, 2304, "linear")
    assert check_adapter_fits_base(summary(module, fan_in_fan_out=True), base) == []
    assert check_adapter_fits_base(summary(module), base) == [
        "transformer.h.0.attn.c_attn: adapter has 2304x768 (out x in), base model has 768x2304"
    ]


def test_tied_lm_head_uses_the_input_embedding() -> None:
    base = {"model.embed_tokens": [128, 64]}
    head = LoraModuleShape("lm_head", 4, 64, 128, "linear")
    assert check_adapter_fits_base(summary(head), base) == []
    wrong = LoraModuleShape("lm_head", 4, 32, 128, "linear")
    assert check_adapter_fits_base(summary(wrong), base) == [
        "lm_head: adapter has 128x32 (out x in), base model has 128x64"
    ]


# ----------------------------------------------------------------- real PEFT + transformers


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A tiny Llama base checkpoint (two sizes) and a PEFT adapter trained on the first."""
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    tmp = tmp_path_factory.mktemp("base")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, overrides in (("base", {}), ("other", {"intermediate_size": 96})):
            torch.manual_seed(0)
            model = LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides}))
            model.save_pretrained(tmp / label, safe_serialization=True)
            blob = (tmp / label / "model.safetensors").read_bytes()
            out[label] = linear_modules(parse_safetensors_bytes(blob).tensors)
        torch.manual_seed(0)
        peft_model = get_peft_model(
            LlamaForCausalLM(LlamaConfig(**TINY)),
            LoraConfig(r=4, target_modules=["q_proj", "down_proj", "embed_tokens", "lm_head"]),
        )
        peft_model.save_pretrained(tmp / "adapter")
    config = parse_adapter_config((tmp / "adapter" / "adapter_config.json").read_bytes())
    header = parse_safetensors_bytes((tmp / "adapter" / "adapter_model.safetensors").read_bytes())
    out["adapter"] = validate_lora_config(config, header.tensors)
    return out


def test_real_adapter_fits_its_base(real) -> None:
    assert "model.layers.0.mlp.down_proj" in real["base"]
    assert check_adapter_fits_base(real["adapter"], real["base"]) == []


def test_real_adapter_does_not_fit_another_base(real) -> None:
    problems = check_adapter_fits_base(real["adapter"], real["other"])
    assert problems == [
        f"model.layers.{i}.mlp.down_proj: adapter has 64x128 (out x in), base model has 64x96"
        for i in range(2)
    ]
