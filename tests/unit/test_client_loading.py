"""loreg.loading with real PEFT adapters on a tiny Llama: several adapters, switch, unload."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from loreg.errors import NotFoundError  # noqa: E402
from loreg.loading import (  # noqa: E402
    adapter_name_for,
    load_adapter,
    loaded_adapters,
    unload_adapter,
    use_adapter,
)
from tests.support.fake_registry import FakeRegistry, make_registry  # noqa: E402

TOKENS = torch.tensor([[1, 5, 9, 3, 7, 2]])


def _base_model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return transformers.LlamaForCausalLM(config).eval()


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, tuple[Path, torch.Tensor]]:
    """Two adapters saved to disk, with the logits each gives (computed by plain PEFT)."""
    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for seed, targets in ((1, ["q_proj", "v_proj"]), (2, ["o_proj", "down_proj"])):
        torch.manual_seed(seed)
        config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
        model = peft.get_peft_model(_base_model(), config)
        folder = root / f"adapter{seed}"
        model.save_pretrained(folder)
        out[f"a{seed}"] = (folder, _logits(model.eval()))
    return out


def test_default_adapter_name_is_a_valid_module_key() -> None:
    assert adapter_name_for("default", "medical", 1) == "default__medical__v1"
    name = adapter_name_for("acme", "med.v2_x", 12)
    assert "." not in name and name == "acme__med_v2_x__v12"


def test_several_adapters_load_switch_and_unload(adapters) -> None:
    base = _base_model()
    base_logits = _logits(base)
    (path1, expect1), (path2, expect2) = adapters["a1"], adapters["a2"]
    assert not torch.allclose(expect1, base_logits)
    assert not torch.allclose(expect1, expect2)

    model = load_adapter(base, path1, "one")
    assert isinstance(model, peft.PeftModel)
    assert model.active_adapter == "one"
    torch.testing.assert_close(_logits(model), expect1, rtol=0, atol=1e-6)

    same = load_adapter(model, path2, "two")
    assert same is model
    assert loaded_adapters(model) == ["one", "two"]
    assert model.active_adapter == "two"
    torch.testing.assert_close(_logits(model), expect2, rtol=0, atol=1e-6)

    use_adapter(model, "one")
    torch.testing.assert_close(_logits(model), expect1, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)

    unload_adapter(model, "one")
    assert loaded_adapters(model) == ["two"]
    assert not any(".one." in n for n, _ in model.named_parameters())
    torch.testing.assert_close(_logits(model), expect2, rtol=0, atol=1e-6)
    with model.disable_adapter():
        torch.testing.assert_close(_logits(model), base_logits, rtol=0, atol=1e-6)

    with pytest.raises(NotFoundError, match="loaded: two"):
        use_adapter(model, "one")

    plain = unload_adapter(model, "two")  # the last one: back to the base model
    assert not isinstance(plain, peft.PeftModel)
    assert not any("lora_" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(_logits(plain), base_logits, rtol=0, atol=1e-6)


def test_unloading_an_inactive_adapter_keeps_the_active_one(adapters) -> None:
    (path1, expect1), (path2, _) = adapters["a1"], adapters["a2"]
    model = load_adapter(_base_model(), path1, "one")
    load_adapter(model, path2, "two")
    use_adapter(model, "one")
    assert unload_adapter(model, "two") is model
    assert model.active_adapter == "one"
    torch.testing.assert_close(_logits(model), expect1, rtol=0, atol=1e-6)


def test_loading_an_existing_name_reuses_or_replaces(adapters) -> None:
    (path1, expect1), (path2, expect2) = adapters["a1"], adapters["a2"]
    model = load_adapter(_base_model(), path1, "main")
    load_adapter(model, path2, "main")  # same name, no replace: kept as is
    torch.testing.assert_close(_logits(model), expect1, rtol=0, atol=1e-6)
    load_adapter(model, path2, "main", replace=True)
    assert loaded_adapters(model) == ["main"]
    torch.testing.assert_close(_logits(model), expect2, rtol=0, atol=1e-6)


def test_trainable_load_enables_gradients(adapters) -> None:
    model = load_adapter(_base_model(), adapters["a1"][0], "t", is_trainable=True)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad for p in lora)


def test_registry_load_pulls_and_names_by_version(adapters, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LOREG_OFFLINE", raising=False)
    fake = FakeRegistry()
    (path1, expect1), (path2, expect2) = adapters["a1"], adapters["a2"]
    with make_registry(fake, tmp_path / "cache") as registry:
        registry.push(path1, "medical")
        registry.push(path2, "legal")
        registry.set_alias("legal-v1", "prod")
        model = registry.load(_base_model(), "medical-v1")
        assert model.active_adapter == "default__medical__v1"
        torch.testing.assert_close(_logits(model), expect1, rtol=0, atol=1e-6)
        registry.load(model, "legal@prod")
        assert model.active_adapter == "default__legal__v1"
        torch.testing.assert_close(_logits(model), expect2, rtol=0, atol=1e-6)
        registry.use(model, "medical-v1")
        torch.testing.assert_close(_logits(model), expect1, rtol=0, atol=1e-6)
        registry.unload(model, "default/medical-v1")
        assert loaded_adapters(model) == ["default__legal__v1"]
        torch.testing.assert_close(_logits(model), expect2, rtol=0, atol=1e-6)
