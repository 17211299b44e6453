"""Tiny Llama models and PEFT LoRA adapters built from configs (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=64,
)


def tiny_llama(seed: int = 0, **overrides):
    """A randomly initialised tiny LlamaForCausalLM (fixed seed), in fp32 eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, **overrides}))
    return model.eval()


def save_base_model(folder: Path, seed: int = 0, **overrides) -> Path:
    """Write a tiny base model (config.json + model.safetensors) to ``folder``."""
    tiny_llama(seed, **overrides).save_pretrained(folder, safe_serialization=True)
    return folder


def make_lora(model, seed: int = 1, r: int = 4, targets=("q_proj", "v_proj"), **kwargs):
    """Wrap ``model`` in a PEFT LoRA with random (non-zero) A and B, fixed seed."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=list(targets), lora_dropout=0.0, **kwargs
    )
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return peft_model.eval()


def save_adapter(
    folder: Path, base_seed: int = 0, seed: int = 1, base: dict | None = None, **lora_kwargs
) -> Path:
    """Write a tiny PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors).

    ``base`` overrides the tiny Llama config (e.g. a wider model); the rest goes to LoRA.
    """
    model = tiny_llama(base_seed, **(base or {}))
    make_lora(model, seed=seed, **lora_kwargs).save_pretrained(folder)
    return folder


def byte_ids(text: str):
    """Byte-level token ids (mod 128) for the tiny model; shape [1, len]."""
    import torch

    return torch.tensor([[b % 128 for b in text.encode()]])


TRAIN_TEXT = "the patient reports mild fever and cough; advise rest, fluids and follow-up. " * 8


def train_lora(
    out_dir: Path,
    steps: int = 10,
    seed: int = 0,
    r: int = 8,
    targets=("q_proj", "k_proj", "v_proj", "o_proj"),
):
    """Train a PEFT LoRA on the tiny Llama for a few steps and save it; returns (model, losses)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(
        tiny_llama(seed=0),
        LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), lora_dropout=0.0),
    )
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    ids = byte_ids(TRAIN_TEXT)[:, :64]
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    model.eval()
    model.save_pretrained(out_dir)
    return model, losses
