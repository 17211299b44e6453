"""User patterns in a LoRA config are matched in bounded time, with PEFT's semantics."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import InvalidConfig
from registry.validation import peft_config
from registry.validation.patterns import MAX_PATTERN_LENGTH
from registry.validation.peft_config import validate_lora_config
from registry.validation.safetensors_header import TensorInfo

P = "base_model.model."


def _lora_tensors(module: str, r: int = 4) -> dict[str, TensorInfo]:
    return {
        f"{P}{module}.lora_A.weight": TensorInfo("F32", (r, 8), 0, r * 32),
        f"{P}{module}.lora_B.weight": TensorInfo("F32", (8, r), r * 32, r * 64),
    }


def _config(**fields) -> dict:
    return {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"], **fields}


EVIL = [
    {"target_modules": "(a+)+b"},
    {"target_modules": "(a|aa)+b"},
    {"target_modules": ["a"], "exclude_modules": "(a|a)+b"},
    {"target_modules": "a+", "rank_pattern": {"(a|aa)+b": 2}},
]


@pytest.mark.parametrize("fields", EVIL, ids=["nested-plus", "alternation", "exclude", "rank"])
def test_catastrophic_patterns_are_refused_within_a_second(fields):
    tensors = {}
    for i in range(3):  # several modules: the budget is shared, not per match
        tensors.update(_lora_tensors("a" * (34 + i)))
    started = time.monotonic()
    with pytest.raises(InvalidConfig) as info:
        validate_lora_config(_config(**fields), tensors)
    assert time.monotonic() - started < 1.0
    # ``regex`` answers '(a+)+b' at once (no match); the others run out of budget
    assert "took longer than" in info.value.message or "not matched" in info.value.message


def test_long_and_invalid_patterns_name_the_field():
    tensors = _lora_tensors("q")
    with pytest.raises(InvalidConfig) as info:
        validate_lora_config(_config(target_modules="q" * (MAX_PATTERN_LENGTH + 1)), tensors)
    assert "target_modules" in info.value.message and "limit" in info.value.message
    with pytest.raises(InvalidConfig) as info:
        validate_lora_config(_config(rank_pattern={"(": 2}), tensors)
    assert "rank_pattern key '('" in info.value.message
    # valid for the ``regex`` module but not for ``re``, which PEFT loads it with
    with pytest.raises(InvalidConfig) as info:
        validate_lora_config(_config(target_modules=r"\p{L}+"), tensors)
    assert "not a valid regular expression" in info.value.message


def test_lookaround_patterns_of_real_configs_still_work():
    tensors = _lora_tensors("language_model.layers.0.q_proj")
    config = _config(target_modules=r"^(?!.*vision_tower).*(q_proj|v_proj)$")
    assert validate_lora_config(config, tensors).modules


def test_long_name_lists_are_linear():
    names = [f"m{i}" for i in range(peft_config.MAX_CONFIG_ITEMS)]
    tensors = {}
    for i in range(200):
        tensors.update(_lora_tensors(f"model.layers.{i}.m{i}"))
    started = time.monotonic()
    validate_lora_config(_config(target_modules=names), tensors)
    with pytest.raises(InvalidConfig) as info:  # none of these modules_to_save is saved
        validate_lora_config(_config(target_modules=names, modules_to_save=names), tensors)
    assert time.monotonic() - started < 2.0
    assert f"({len(names)} problem(s))" in info.value.message
    assert all(p.startswith("modules_to_save entry") for p in info.value.details[:5])
    with pytest.raises(InvalidConfig) as info:
        validate_lora_config(_config(target_modules=[*names, "q"]), tensors)
    assert "at most 4096 entries" in info.value.message


# ----------------------------------------------------------------- PEFT's own semantics

_SEG = st.sampled_from(["a", "b", "ab", "q_proj", "layers", "0", "1", "mlp"])
_MODULE = st.lists(_SEG, min_size=1, max_size=5).map(".".join)
_NAMES = st.lists(st.sampled_from(["a", "b", "q_proj", "mlp.a", "layers.0.a", "ab"]), max_size=4)
_REGEX = st.sampled_from([r".*a", r"a|b", r".*\.q_proj", r"(a|b)\..*", r"ab?", r".*(?<!b)"])


@settings(max_examples=400, deadline=None)
@given(
    module=_MODULE,
    target=st.one_of(_NAMES.filter(bool), _REGEX),
    exclude=st.one_of(st.none(), _NAMES, _REGEX),
    layers=st.one_of(st.none(), st.lists(st.integers(0, 2), min_size=1, max_size=2)),
    layers_pattern=st.one_of(st.none(), st.sampled_from(["layers", "mlp"])),
)
def test_targeting_agrees_with_peft(module, target, exclude, layers, layers_pattern):
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    fields = {"target_modules": target, "exclude_modules": exclude}
    if layers is not None:
        fields.update(layers_to_transform=layers, layers_pattern=layers_pattern)
    problems: list[str] = []
    ours = peft_config._is_targeted(module, peft_config._read_settings(_config(**fields), problems))
    try:
        LoraConfig(**fields)
    except ValueError:  # e.g. layers_to_transform with a regex: refused by both
        assert problems
        return
    assert not problems
    theirs = check_target_module_exists(
        SimpleNamespace(modules_to_save=None, target_parameters=None, **fields), module
    )
    expected = bool(theirs) and type(theirs).__name__ != "_ExcludedModule"
    assert ours == expected


@settings(max_examples=200, deadline=None)
@given(
    module=_MODULE,
    keys=st.lists(st.sampled_from(["a", "q_proj", "mlp.a", "a|b", "b$"]), max_size=3),
)
def test_rank_pattern_key_matching_agrees_with_peft(module, keys):
    from peft.utils.other import get_pattern_key

    rank_pattern = {k: i + 2 for i, k in enumerate(keys)}
    settings_ = peft_config._read_settings(_config(rank_pattern=rank_pattern), [])
    rank, _ = peft_config._expected_rank(module, settings_)
    key = get_pattern_key(list(rank_pattern), module)
    assert rank == rank_pattern.get(key, 4)


@settings(max_examples=200, deadline=None)
@given(rest=_MODULE, saved=st.lists(st.sampled_from(["a", "mlp.a", "q_proj", "ab"]), max_size=3))
def test_modules_to_save_matching_agrees_with_peft(rest, saved):
    settings_ = peft_config._read_settings(_config(modules_to_save=saved), [])
    expected = any(re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", rest) for m in saved)
    assert peft_config._is_module_to_save(rest, settings_) == expected
