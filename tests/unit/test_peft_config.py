"""LoRA config + tensor validation against adapters written by real PEFT."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from registry.errors import InvalidConfig
from registry.validation.peft_config import (
    LoraModuleShape,
    parse_adapter_config,
    validate_lora_config,
)
from registry.validation.safetensors_header import TensorInfo, parse_safetensors_bytes

TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
)
P = "base_model.model."

#: name -> (LoraConfig kwargs, LlamaConfig overrides)
SCENARIOS: dict[str, tuple[dict, dict]] = {
    "qv": (dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), {}),
    "rank_pattern_embedding": (
        dict(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj", "embed_tokens"],
            rank_pattern={"v_proj": 2},
            alpha_pattern={"v_proj": 4},
            modules_to_save=["lm_head"],
        ),
        {},
    ),
    "rslora_bias": (
        dict(r=8, lora_alpha=16, target_modules=["o_proj"], use_rslora=True, lora_bias=True),
        {},
    ),
    "dora": (
        dict(r=4, target_modules=["q_proj", "down_proj"], use_dora=True, task_type="CAUSAL_LM"),
        {},
    ),
    "regex": (dict(r=2, target_modules=r".*\.mlp\.(up|gate)_proj"), {}),
    "layers": (dict(r=4, target_modules=["k_proj"], layers_to_transform=[1]), {}),
    "exclude": (
        dict(r=4, target_modules=["q_proj"], exclude_modules=["model.layers.0.self_attn.q_proj"]),
        {},
    ),
    "all_linear": (dict(r=2, target_modules="all-linear"), {}),
    "bias_tokens": (
        dict(r=4, target_modules=["q_proj"], bias="all", trainable_token_indices=[1, 2]),
        {"attention_bias": True},
    ),
}


@dataclasses.dataclass
class Saved:
    """An adapter written by PEFT, and the truth read from the live PEFT model."""

    config: dict
    tensors: dict[str, TensorInfo]
    expected: dict[str, tuple[int, int, int, str]]  # module -> (r, in, out, kind)
    parameter_count: int


def _save(tmp: Path, name: str, lora_kwargs: dict, overrides: dict) -> Saved:
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides}))
    peft_model = get_peft_model(model, LoraConfig(**lora_kwargs))
    expected = {}
    for module_name, module in peft_model.base_model.model.named_modules():
        if isinstance(module, LoraLayer) and module.active_adapters:
            if "default" in module.lora_A:
                a, b, kind = (
                    module.lora_A["default"].weight,
                    module.lora_B["default"].weight,
                    "linear",
                )
            elif "default" in module.lora_embedding_A:
                a, b = module.lora_embedding_A["default"], module.lora_embedding_B["default"]
                kind = "embedding"
            else:
                continue
            expected[module_name] = (a.shape[0], a.shape[1], b.shape[0], kind)
    folder = tmp / name
    peft_model.save_pretrained(folder)
    blob = (folder / "adapter_model.safetensors").read_bytes()
    from safetensors.torch import load

    count = sum(t.numel() for t in load(blob).values())
    return Saved(
        config=parse_adapter_config((folder / "adapter_config.json").read_bytes()),
        tensors=parse_safetensors_bytes(blob).tensors,
        expected=expected,
        parameter_count=count,
    )


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, Saved]:
    """Every scenario saved once (peft is imported once per module)."""
    pytest.importorskip("peft")
    import warnings

    tmp = tmp_path_factory.mktemp("adapters")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: _save(tmp, name, *spec) for name, spec in SCENARIOS.items()}


def refused(config: dict, tensors: dict[str, TensorInfo]) -> InvalidConfig:
    with pytest.raises(InvalidConfig) as info:
        validate_lora_config(config, tensors)
    err = info.value
    assert isinstance(err.details, list) and err.details
    for problem in err.details[:20]:
        assert problem in err.message
    return err


# ----------------------------------------------------------------- valid adapters


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_real_peft_adapters_validate(adapters, scenario: str) -> None:
    saved = adapters[scenario]
    summary = validate_lora_config(saved.config, saved.tensors)
    assert saved.expected, "the scenario must adapt at least one module"
    assert {
        m: (s.r, s.in_features, s.out_features, s.kind) for m, s in summary.modules.items()
    } == saved.expected
    for module, shape in summary.modules.items():
        assert isinstance(shape, LoraModuleShape) and shape.module == module
        assert not module.startswith(P)
    assert summary.r == saved.config["r"]
    assert summary.lora_alpha == saved.config["lora_alpha"]
    assert summary.use_rslora == saved.config["use_rslora"]
    assert summary.parameter_count == saved.parameter_count
    assert summary.base_model_name_or_path == saved.config["base_model_name_or_path"]


def test_summary_details(adapters) -> None:
    summary = validate_lora_config(
        adapters["rank_pattern_embedding"].config, adapters["rank_pattern_embedding"].tensors
    )
    assert summary.modules["model.layers.1.self_attn.v_proj"].r == 2
    assert summary.modules["model.layers.1.self_attn.q_proj"].r == 4
    embed = summary.modules["model.embed_tokens"]
    assert (embed.kind, embed.in_features, embed.out_features) == ("embedding", 128, 64)
    assert summary.target_modules == ["embed_tokens", "q_proj", "v_proj"]
    assert P + "lm_head.weight" in summary.extra_tensors
    regex = validate_lora_config(adapters["regex"].config, adapters["regex"].tensors)
    assert regex.target_modules == r".*\.mlp\.(up|gate)_proj"
    assert set(regex.modules) == {
        f"model.layers.{i}.mlp.{p}_proj" for i in range(2) for p in ("up", "gate")
    }


# ----------------------------------------------------------------- config refusals


def test_only_lora_is_accepted(adapters) -> None:
    saved = adapters["qv"]
    for peft_type in ("LOHA", None, 3):
        config = {**saved.config, "peft_type": peft_type}
        with pytest.raises(InvalidConfig, match="only LoRA") as info:
            validate_lora_config(config, saved.tensors)
        assert repr(peft_type) in info.value.message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("r", 0, "'r' must be a positive integer"),
        ("r", "4", "'r' must be a positive integer"),
        ("r", True, "'r' must be a positive integer"),
        ("lora_alpha", -1, "'lora_alpha' must be a positive number"),
        ("lora_alpha", "8", "'lora_alpha' must be a positive number"),
        ("lora_dropout", 1.0, "'lora_dropout' must be a number in [0, 1)"),
        ("use_rslora", "yes", "'use_rslora' must be true or false"),
        ("bias", "some", "'bias' must be 'none', 'all' or 'lora_only'"),
        ("task_type", 3, "'task_type' must be null or one of SEQ_CLS"),
        ("rank_pattern", {"q_proj": 0}, "'rank_pattern' must be"),
        ("rank_pattern", ["q_proj"], "'rank_pattern' must be"),
        ("alpha_pattern", {"q_proj": "x"}, "'alpha_pattern' must be"),
        ("target_modules", [], "'target_modules' must be"),
        ("target_modules", [1], "'target_modules' must be"),
        ("target_modules", None, "'target_modules' is missing"),
        ("target_modules", "(", "not a valid regular expression"),
        ("rank_pattern", {"(": 4}, "not a valid regular expression"),
        ("modules_to_save", "lm_head", "'modules_to_save' must be"),
        ("layers_to_transform", [-1], "'layers_to_transform' must be"),
        ("target_parameters", ["experts.down_proj"], "'target_parameters' is set"),
        ("use_qalora", True, "'use_qalora' is set"),
    ],
)
def test_bad_fields_are_refused(adapters, field: str, value, fragment: str) -> None:
    saved = adapters["qv"]
    err = refused({**saved.config, field: value}, saved.tensors)
    assert fragment in err.message


def test_unknown_fields_are_allowed(adapters) -> None:
    saved = adapters["qv"]
    config = {**saved.config, "a_field_from_peft_99": {"x": 1}}
    assert validate_lora_config(config, saved.tensors).modules


def test_missing_known_fields_take_peft_defaults(adapters) -> None:
    saved = adapters["qv"]
    config = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj", "v_proj"]}
    summary = validate_lora_config(config, saved.tensors)
    assert summary.lora_alpha == 8 and summary.use_rslora is False


def test_rank_must_match_config(adapters) -> None:
    saved = adapters["qv"]
    err = refused({**saved.config, "r": 8}, saved.tensors)
    assert "model.layers.0.self_attn.q_proj: rank is 4 but the config says 8 (r)" in err.message
    assert len(err.details) == 4  # q and v in two layers


def test_rank_pattern_is_honoured(adapters) -> None:
    saved = adapters["rank_pattern_embedding"]
    err = refused({**saved.config, "rank_pattern": {}}, saved.tensors)
    assert "model.layers.0.self_attn.v_proj: rank is 2 but the config says 4 (r)" in err.message
    err = refused({**saved.config, "rank_pattern": {"v_proj": 3}}, saved.tensors)
    assert "rank is 2 but the config says 3 (rank_pattern['v_proj'])" in err.message


def test_modules_must_match_target_modules(adapters) -> None:
    saved = adapters["qv"]
    err = refused({**saved.config, "target_modules": ["q_proj"]}, saved.tensors)
    assert "model.layers.1.self_attn.v_proj: has LoRA tensors but is not matched" in err.message
    assert not any(p.startswith("model.layers.0.self_attn.q_proj") for p in err.details)
    regex = adapters["regex"]
    err = refused({**regex.config, "target_modules": r".*\.mlp\.up_proj"}, regex.tensors)
    assert "model.layers.0.mlp.gate_proj: has LoRA tensors" in err.message


def test_layers_to_transform_and_exclude_are_honoured(adapters) -> None:
    layers = adapters["layers"]
    err = refused({**layers.config, "layers_to_transform": [0]}, layers.tensors)
    assert "model.layers.1.self_attn.k_proj" in err.message
    excl = adapters["exclude"]
    err = refused(
        {**excl.config, "exclude_modules": ["model.layers.1.self_attn.q_proj"]}, excl.tensors
    )
    assert "model.layers.1.self_attn.q_proj" in err.message and "exclude" in err.message


# ----------------------------------------------------------------- tensor refusals


def _without(tensors: dict[str, TensorInfo], name: str) -> dict[str, TensorInfo]:
    out = dict(tensors)
    del out[name]
    return out


def test_missing_factor(adapters) -> None:
    saved = adapters["qv"]
    tensors = _without(saved.tensors, P + "model.layers.0.self_attn.q_proj.lora_B.weight")
    err = refused(saved.config, tensors)
    assert "model.layers.0.self_attn.q_proj: has lora_A but no lora_B" in err.message
    tensors = _without(saved.tensors, P + "model.layers.0.self_attn.q_proj.lora_A.weight")
    assert "has lora_B but no lora_A" in refused(saved.config, tensors).message
    emb = adapters["rank_pattern_embedding"]
    tensors = _without(emb.tensors, P + "model.embed_tokens.lora_embedding_B")
    err = refused(emb.config, tensors)
    assert "model.embed_tokens: has lora_embedding_A but no lora_embedding_B" in err.message


def test_rank_disagreement_between_factors(adapters) -> None:
    saved = adapters["qv"]
    tensors = dict(saved.tensors)
    key = P + "model.layers.0.self_attn.q_proj.lora_B.weight"
    tensors[key] = dataclasses.replace(tensors[key], shape=(64, 3))
    err = refused(saved.config, tensors)
    assert "lora_A has rank 4 ([4, 64]) but lora_B has rank 3 ([64, 3])" in err.message


def test_non_2d_and_non_float_factors(adapters) -> None:
    saved = adapters["qv"]
    tensors = dict(saved.tensors)
    key = P + "model.layers.0.self_attn.q_proj.lora_A.weight"
    tensors[key] = dataclasses.replace(tensors[key], shape=(4, 64, 1, 1))
    assert "only Linear and Embedding" in refused(saved.config, tensors).message
    tensors[key] = dataclasses.replace(saved.tensors[key], dtype="I32")
    assert "dtype I32" in refused(saved.config, tensors).message


def test_unexpected_and_unprefixed_tensors(adapters) -> None:
    saved = adapters["qv"]
    tensors = dict(saved.tensors)
    tensors[P + "model.norm.weight"] = TensorInfo("F32", (64,), 0, 256)
    err = refused(saved.config, tensors)
    assert f"unexpected tensor '{P}model.norm.weight'" in err.message
    tensors = dict(saved.tensors)
    tensors["model.layers.0.self_attn.q_proj.lora_A.weight"] = TensorInfo("F32", (4, 64), 0, 1024)
    assert "do not start with 'base_model.model.'" in refused(saved.config, tensors).message
    tensors = dict(saved.tensors)
    tensors[P + "model.layers.0.self_attn.q_proj.lora_A.bias"] = TensorInfo("F32", (4,), 0, 16)
    assert "is not a LoRA tensor this registry knows" in refused(saved.config, tensors).message


def test_modules_to_save_must_be_declared(adapters) -> None:
    saved = adapters["rank_pattern_embedding"]
    config = {**saved.config, "modules_to_save": None}
    # lm_head is an embedding-like name, so its full weight is still allowed ...
    assert validate_lora_config(config, saved.tensors)
    tensors = dict(saved.tensors)
    tensors[P + "score.weight"] = TensorInfo("F32", (2, 64), 0, 512)
    assert "unexpected tensor" in refused(config, tensors).message
    assert validate_lora_config({**config, "modules_to_save": ["score"]}, tensors)


def test_saved_embedding_weight_shape_is_checked(adapters) -> None:
    saved = adapters["rank_pattern_embedding"]
    tensors = dict(saved.tensors)
    key = P + "model.embed_tokens.base_layer.weight"
    tensors[key] = dataclasses.replace(tensors[key], shape=(128, 32))
    err = refused(saved.config, tensors)
    assert "saved embedding weight has shape [128, 32] but the LoRA factors imply [128, 64]" in (
        err.message
    )


def test_dora_and_lora_bias_flags(adapters) -> None:
    dora = adapters["dora"]
    err = refused({**dora.config, "use_dora": False}, dora.tensors)
    assert "has lora_magnitude_vector but the config has use_dora=false" in err.message
    key = P + "model.layers.0.mlp.down_proj.lora_magnitude_vector"
    err = refused(dora.config, _without(dora.tensors, key))
    assert "model.layers.0.mlp.down_proj: use_dora is true but there is no" in err.message
    tensors = dict(dora.tensors)
    tensors[key] = dataclasses.replace(tensors[key], shape=(128,))
    assert (
        "lora_magnitude_vector has shape [128]; expected [64]"
        in refused(dora.config, tensors).message
    )
    bias = adapters["rslora_bias"]
    err = refused({**bias.config, "lora_bias": False}, bias.tensors)
    assert "has lora_B.bias but the config has lora_bias=false" in err.message


def test_bias_and_trainable_tokens_need_their_flags(adapters) -> None:
    saved = adapters["bias_tokens"]
    err = refused({**saved.config, "bias": "none"}, saved.tensors)
    assert "unexpected tensor 'base_model.model.model.layers.0.self_attn.k_proj.bias'" in (
        err.message
    )
    err = refused({**saved.config, "trainable_token_indices": None}, saved.tensors)
    assert "trainable_tokens_delta" in err.message


def test_all_problems_are_reported_together(adapters) -> None:
    saved = adapters["qv"]
    tensors = _without(saved.tensors, P + "model.layers.1.self_attn.v_proj.lora_A.weight")
    tensors[P + "stray"] = TensorInfo("F32", (1,), 0, 4)
    err = refused({**saved.config, "lora_dropout": 2, "r": 8}, tensors)
    kinds = ["lora_dropout", "rank is 4 but the config says 8", "no lora_A", "unexpected tensor"]
    for kind in kinds:
        assert any(kind in p for p in err.details), kind
    assert err.code == "invalid_config" and err.to_dict()["error"]["details"] == err.details


def test_many_problems_are_clipped_in_the_message(adapters) -> None:
    saved = adapters["qv"]
    tensors = {P + f"junk{i}": TensorInfo("F32", (1,), 0, 4) for i in range(50)}
    err = refused(saved.config, {**saved.tensors, **tensors})
    assert len(err.details) == 50 and "and 30 more" in err.message


def test_overlong_tensor_names_are_refused_before_matching(adapters) -> None:
    saved = adapters["regex"]
    name = P + "a." * 5000 + "lora_A.weight"
    err = refused(saved.config, {**saved.tensors, name: TensorInfo("F32", (2, 4), 0, 32)})
    assert "the limit is 1024" in err.message and len(err.message) < 2000


def test_no_lora_tensors() -> None:
    config = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]}
    assert "holds no LoRA tensors" in refused(config, {}).message


def test_config_is_not_modified(adapters) -> None:
    saved = adapters["rank_pattern_embedding"]
    before = copy.deepcopy(saved.config)
    validate_lora_config(saved.config, saved.tensors)
    assert saved.config == before


# ----------------------------------------------------------------- parse_adapter_config


def test_parse_adapter_config_round_trip() -> None:
    config = {"peft_type": "LORA", "r": 4, "target_modules": ["q"], "name": "é"}
    assert parse_adapter_config(json.dumps(config).encode()) == config


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff{}", "UTF-8"),
        (b'{"r": NaN}', "not valid JSON"),
        (b'{"r": 1, "r": 2}', "duplicate key"),
        (b"[" * 100_000, "nested deeper than"),
        (b"", "not valid JSON"),
    ],
)
def test_parse_adapter_config_refusals(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_adapter_config(raw)
    assert fragment in info.value.message


# ----------------------------------------------------------------- what PEFT's loader refuses
# Each config below is one PEFT refuses (PeftConfig.from_pretrained or
# PeftModel.from_pretrained, peft 0.21) although every type check above passes.


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"task_type": "NOT_A_TASK"}, "'task_type' must be null or one of"),
        ({"task_type": "\udbff\udfff"}, "'task_type' must be null or one of"),
        ({"layers_pattern": ["layers"]}, "'layers_pattern' is set but 'layers_to_transform'"),
        ({"layers_pattern": "layers"}, "'layers_pattern' is set but 'layers_to_transform'"),
        ({"eva_config": "\n\r\t"}, "'eva_config' must be null or an object"),
        ({"corda_config": 5}, "'corda_config' must be null or an object"),
        ({"lora_ga_config": []}, "'lora_ga_config' must be null or an object"),
        ({"velora_config": "x"}, "'velora_config' must be null or an object"),
        ({"loftq_config": "x"}, "'loftq_config' must be null or an object"),
        ({"eva_config": {"rho": 0.5}}, "'eva_config.rho' must be"),
        ({"eva_config": {"tau": "x"}}, "'eva_config.tau' must be"),
        ({"corda_config": {"corda_method": "zzz"}}, "'corda_config.corda_method' must be"),
        ({"rank_pattern": None}, "'rank_pattern' must be an object"),
        ({"alpha_pattern": None}, "'alpha_pattern' must be an object"),
        ({"megatron_config": {"a": 1}}, "'megatron_config' is set"),
        ({"megatron_config": "x"}, "'megatron_config' is set"),
        ({"megatron_core": "my.megatron"}, "'megatron_core' must be"),
        ({"init_lora_weights": "nope"}, "'init_lora_weights' must be"),
        ({"init_lora_weights": "pissa_niter_x"}, "'init_lora_weights' must be"),
        ({"init_lora_weights": 3}, "'init_lora_weights' must be"),
        ({"init_lora_weights": "corda"}, "'init_lora_weights' is 'corda'"),
        ({"init_lora_weights": "loftq"}, "'loftq_config' must be set"),
        ({"trainable_token_indices": [0, 1]}, "no trainable-token tensor"),
        ({"trainable_token_indices": []}, "'trainable_token_indices' must be"),
        ({"trainable_token_indices": {"embed_tokens": [0]}}, "no trainable-token tensor"),
        ({"trainable_token_indices": [-1]}, "'trainable_token_indices' must be"),
        ({"target_modules": ".*"}, "matches 'model'"),
        ({"target_modules": ".*(q|v)_proj|model"}, "matches 'model'"),
        (
            {"target_modules": ["q_proj", "v_proj", "self_attn"]},
            "matches 'model.layers.0.self_attn'",
        ),
        ({"target_modules": "^$|.*(q|v)_proj"}, "matches the root module"),
    ],
)
def test_configs_peft_refuses_are_refused(adapters, change: dict, fragment: str) -> None:
    saved = adapters["qv"]
    err = refused({**saved.config, **change}, saved.tensors)
    assert fragment in err.message


def test_layers_settings_need_a_list_of_target_modules(adapters) -> None:
    saved = adapters["regex"]
    for change in ({"layers_to_transform": [0]}, {"layers_pattern": "layers"}):
        err = refused({**saved.config, **change}, saved.tensors)
        assert "cannot be used when 'target_modules' is a string" in err.message
    layers = adapters["layers"]
    err = refused({**layers.config, "target_modules": "all-linear"}, layers.tensors)
    assert "cannot be used when 'target_modules' is a string" in err.message


def test_lora_bias_needs_plain_init_and_no_dora(adapters) -> None:
    saved = adapters["rslora_bias"]
    err = refused({**saved.config, "init_lora_weights": "gaussian"}, saved.tensors)
    assert "lora_bias=true needs init_lora_weights true or false" in err.message


@pytest.mark.parametrize(
    "change",
    [
        {"task_type": None},
        {"task_type": "SEQ_CLS"},
        {"task_type": "FEATURE_EXTRACTION"},
        {"init_lora_weights": False},
        {"init_lora_weights": "gaussian"},
        {"init_lora_weights": "pissa"},
        {"init_lora_weights": "pissa_niter_4"},
        {"init_lora_weights": "olora"},
        {"init_lora_weights": "orthogonal"},
        {"init_lora_weights": "eva", "eva_config": {"rho": 2.0, "tau": 0.99, "whiten": False}},
        {"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 4, "loftq_iter": 1}},
        {"eva_config": {"a_future_field": 1}},
        {"loftq_config": None},
        {"megatron_config": None, "megatron_core": None},
        {"layers_to_transform": [0, 1], "layers_pattern": "layers"},
        {"layers_to_transform": [0, 1], "layers_pattern": ["layers"]},
        {"target_modules": r".*\.(q|v)_proj"},
        {"target_modules": ["q_proj", "v_proj", "not_in_this_model"]},
        {"trainable_token_indices": {}},
    ],
)
def test_configs_peft_loads_stay_accepted(adapters, change: dict) -> None:
    saved = adapters["qv"]
    assert validate_lora_config({**saved.config, **change}, saved.tensors).modules


def test_trainable_tokens_need_matching_tensors(adapters) -> None:
    saved = adapters["bias_tokens"]  # trainable_token_indices=[1, 2]: one [2, 64] delta
    assert validate_lora_config(saved.config, saved.tensors).modules
    (delta,) = [n for n in saved.tensors if "trainable_tokens" in n]
    assert delta == P + "model.embed_tokens.token_adapter.trainable_tokens_delta"
    err = refused({**saved.config, "trainable_token_indices": [1, 2, 3]}, saved.tensors)
    assert "has 2 rows but trainable_token_indices lists 3 token(s)" in err.message
    as_dict = {**saved.config, "trainable_token_indices": {"embed_tokens": [1, 2]}}
    assert validate_lora_config(as_dict, saved.tensors).modules
    err = refused(
        {**saved.config, "trainable_token_indices": {"embed_tokens": [1, 2], "lm_head": [1]}},
        saved.tensors,
    )
    assert "trainable_token_indices['lm_head']: no trainable-token tensor" in err.message
    err = refused({**saved.config, "trainable_token_indices": {"lm_head": [1, 2]}}, saved.tensors)
    assert "not listed in trainable_token_indices" in err.message
    tensors = dict(saved.tensors)
    tensors[P + "model.embed_tokens.token_adapter.trainable_tokens_other"] = tensors[delta]
    assert "unexpected tensor" in refused(saved.config, tensors).message


def test_modules_to_save_need_their_tensors(adapters) -> None:
    saved = adapters["qv"]  # no lm_head tensor: PeftModel.from_pretrained raises KeyError
    err = refused({**saved.config, "modules_to_save": ["lm_head"]}, saved.tensors)
    assert "modules_to_save entry 'lm_head' has no saved tensor" in err.message
    # PEFT adds these for classification tasks; a model without such a head saves nothing
    config = {**saved.config, "modules_to_save": ["classifier", "score"], "task_type": "SEQ_CLS"}
    assert validate_lora_config(config, saved.tensors).modules


@pytest.mark.parametrize(
    "change",
    [{"lora_alpha": 10**400}, {"alpha_pattern": {"q_proj": 10**309}}, {"lora_alpha": -(10**400)}],
)
def test_numbers_must_fit_a_float(adapters, change: dict) -> None:
    saved = adapters["qv"]  # PEFT computes lora_alpha / r: OverflowError past a float
    err = refused({**saved.config, **change}, saved.tensors)
    assert "positive number" in err.message
