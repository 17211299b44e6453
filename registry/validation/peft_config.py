"""Validate a PEFT LoRA ``adapter_config.json`` against its safetensors tensors.

PEFT's ``save_pretrained`` names LoRA tensors
``base_model.model.<module>.lora_A.weight`` ([r, in]) and ``.lora_B.weight``
([out, r]); embeddings use ``.lora_embedding_A`` ([r, num_embeddings]) and
``.lora_embedding_B`` ([dim, r]); DoRA adds ``.lora_magnitude_vector`` ([out])
and ``lora_bias=True`` adds ``.lora_B.bias`` ([out]). Besides those, PEFT may
save ``modules_to_save`` weights, base biases (``bias`` != "none"), the base
weight of a targeted or resized embedding layer, and trainable-token deltas.
Anything else is refused. Every problem found is reported at once. Standard
library only.

int8 adapters (safetensors metadata ``format`` = :data:`INT8_FORMAT`, written by
the compress job, see :mod:`workers.ops.compress`) store each factor as
``<module>.lora_A.qweight`` (I8, the factor's shape) plus ``<module>.lora_A.scales``
(F32, one per row), and likewise for ``lora_B``. They hold nothing else, and are
checked like a plain adapter (both factors, shapes, ``r``, targets) once each
qweight/scales pair has been checked.
"""

from __future__ import annotations

import math
import re
import reprlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from loreg.constants import INT8_FORMAT
from registry.errors import InvalidConfig
from registry.validation.json_values import loads_bounded
from registry.validation.patterns import (
    MAX_PATTERN_LENGTH,
    MatchBudget,
    PatternError,
    SafePattern,
    compile_pattern,
    rank_key_pattern,
)
from registry.validation.safetensors_header import TensorInfo

__all__ = ["MAX_PATTERN_LENGTH", "parse_adapter_config", "validate_lora_config"]

#: Prefix PEFT puts before every module path of a LoRA adapter.
PEFT_PREFIX = "base_model.model."
#: Last module-name components of embedding layers (PEFT saves their full weight
#: when they are targeted or were resized).
EMBEDDING_NAMES = frozenset(
    {"embed_tokens", "lm_head", "wte", "word_embeddings", "embed_in", "embed_out", "shared"}
)
#: dtypes a LoRA factor may have.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
#: Most entries in a list or pattern map of the config (target_modules, rank_pattern, ...).
MAX_CONFIG_ITEMS = 4096
#: Longest ``base_model_name_or_path`` (the registry stores it, as a request's base_model).
MAX_BASE_MODEL_NAME = 256
#: Longest tensor name matched against config patterns (real ones are < 200).
MAX_TENSOR_NAME = 1024
#: How many problems are spelled out in the message (all are in ``details``).
MAX_LISTED_PROBLEMS = 20
MAX_DETAILS = 500

#: LoRA variants whose tensors or module layout this validator does not know.
_UNSUPPORTED_VARIANTS = (
    "kasa_config",
    "monteclora_config",
    "use_bdlora",
    "arrow_config",
    "use_qalora",
    "layer_replication",
    "target_parameters",
)

_SUFFIXES = (
    (".lora_A.weight", "A"),
    (".lora_B.weight", "B"),
    (".lora_B.bias", "B_bias"),
    (".lora_embedding_A", "EA"),
    (".lora_embedding_B", "EB"),
    (".lora_magnitude_vector", "M"),
)


@dataclass(frozen=True)
class LoraModuleShape:
    """One LoRA-adapted module: its rank and the base layer's in/out sizes.

    For embeddings ``in_features`` is the number of embeddings and
    ``out_features`` the embedding dimension.
    """

    module: str
    r: int
    in_features: int
    out_features: int
    kind: str  # "linear" | "embedding"


@dataclass(frozen=True)
class LoraSummary:
    """What a valid LoRA adapter holds (``parameter_count``: all stored elements)."""

    r: int
    lora_alpha: float
    use_rslora: bool
    target_modules: list[str] | str
    modules: dict[str, LoraModuleShape]
    parameter_count: int
    base_model_name_or_path: str | None
    fan_in_fan_out: bool = False
    use_dora: bool = False
    extra_tensors: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- parsing


def parse_adapter_config(raw: bytes) -> dict[str, Any]:
    """Parse a JSON config file (strict UTF-8 JSON object, bounded); else :class:`InvalidConfig`.

    Besides syntax, the value must be storable: nested at most
    :data:`~registry.validation.json_values.MAX_JSON_DEPTH` levels, finite
    numbers, no NUL characters or lone surrogates (the message names the field).
    """
    try:
        obj = loads_bounded(raw)
    except ValueError as exc:
        raise InvalidConfig(f"the config is not usable: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidConfig(f"the config must be a JSON object, got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------- field checks


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> TypeGuard[int | float]:
    """A finite float, or an int a float can hold (PEFT divides by it: ``lora_alpha / r``)."""
    if _is_int(v):
        return abs(v) <= sys.float_info.max
    return isinstance(v, float) and math.isfinite(v)


def _is_str_list(v: object) -> TypeGuard[list[str]]:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_int_list(v: object) -> TypeGuard[list[int]]:
    return isinstance(v, list) and all(_is_int(x) for x in v)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100
_REPR.maxlist = _REPR.maxdict = 6


def _short(value: object) -> str:
    """A short repr of a config value for messages (values can be huge)."""
    return _REPR.repr(value)


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or check(v)


def _bounded(check: Callable[[object], bool]) -> Callable[[object], bool]:
    """``check``, and at most :data:`MAX_CONFIG_ITEMS` entries for a list or an object."""
    return lambda v: check(v) and (not isinstance(v, list | dict) or len(v) <= MAX_CONFIG_ITEMS)


def _positive_int_map(v: object) -> bool:
    return isinstance(v, dict) and all(_is_int(x) and x > 0 for x in v.values())


def _positive_number_map(v: object) -> bool:
    return isinstance(v, dict) and all(_is_number(x) and x > 0 for x in v.values())


_ITEMS = f" (at most {MAX_CONFIG_ITEMS} entries)"


def _token_ids(v: object) -> bool:
    return _is_int_list(v) and len(v) > 0 and min(v) >= 0


def _token_indices(v: object) -> bool:
    if isinstance(v, dict):
        return all(isinstance(k, str) and _token_ids(x) for k, x in v.items())
    return _token_ids(v)


#: PEFT's TaskType values (peft.utils.peft_types.TaskType).
TASK_TYPES = (
    "SEQ_CLS",
    "SEQ_2_SEQ_LM",
    "CAUSAL_LM",
    "TOKEN_CLS",
    "QUESTION_ANS",
    "FEATURE_EXTRACTION",
)
#: ``init_lora_weights`` names PEFT's LoRA layer knows (besides ``pissa_niter_<n>``).
#: "corda" is refused on its own: PEFT cannot load it without ``preprocess_corda``.
INIT_METHODS = ("gaussian", "eva", "olora", "pissa", "orthogonal", "mica", "lora_ga", "loftq")
_PISSA_NITER = re.compile(r"pissa_niter_[0-9]{1,9}")


def _init_method(v: object) -> bool:
    if isinstance(v, bool):
        return True
    return isinstance(v, str) and (
        v in INIT_METHODS or v == "corda" or bool(_PISSA_NITER.fullmatch(v))
    )


def _is_bool(v: object) -> bool:
    return isinstance(v, bool)


def _one_of(*options: str) -> tuple[Callable[[object], bool], str]:
    return (lambda v: v in options), "one of " + ", ".join(repr(o) for o in options)


_BOOL = (_is_bool, "true or false")
_INT = (_is_int, "an integer")
_POSITIVE_INT = (lambda v: _is_int(v) and v > 0, "a positive integer")
_OPTIONAL_STR = (_optional(lambda v: isinstance(v, str)), "null or a string")

#: Nested sub-configs PEFT rebuilds as dataclasses from an object (keys it does
#: not know are dropped, as PEFT does): field -> (check, what the value must be).
_SUBCONFIG_FIELDS: dict[str, dict[str, tuple[Callable[[object], bool], str]]] = {
    "eva_config": {
        "rho": (lambda v: _is_number(v) and v >= 1, "a number >= 1"),
        "tau": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
        "use_label_mask": _BOOL,
        "label_mask_value": _INT,
        "whiten": _BOOL,
        "adjust_scaling_factors": _BOOL,
    },
    "corda_config": {
        "cache_file": _OPTIONAL_STR,
        "covariance_file": _OPTIONAL_STR,
        "corda_method": _one_of("ipm", "kpm"),
        "verbose": _BOOL,
        "use_float16_for_covariance": _BOOL,
        "prune_temporary_fields": _BOOL,
    },
    "lora_ga_config": {
        "direction": _one_of("ArBr", "A2rBr", "ArB2r", "random"),
        "scale": _one_of("stable", "weight_svd", "gd_scale", "unit"),
        "stable_gamma": _INT,
    },
    "velora_config": {
        "num_groups": _POSITIVE_INT,
        "scale": (lambda v: _is_number(v) and v > 0, "a positive number"),
        "init_type": _one_of("batch_average", "batch_average_once", "random"),
    },
    "loftq_config": {"loftq_bits": _POSITIVE_INT, "loftq_iter": _POSITIVE_INT},
}


#: Known LoraConfig fields: (check, what the value must be). Unknown fields pass.
_FIELD_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "r": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "lora_alpha": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "lora_dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "use_rslora": (lambda v: isinstance(v, bool), "true or false"),
    "use_dora": (lambda v: isinstance(v, bool), "true or false"),
    "lora_bias": (lambda v: isinstance(v, bool), "true or false"),
    "fan_in_fan_out": (lambda v: isinstance(v, bool), "true or false"),
    "inference_mode": (lambda v: isinstance(v, bool), "true or false"),
    "rank_pattern": (
        _bounded(_positive_int_map),
        "an object mapping patterns to positive ints" + _ITEMS + " (PEFT cannot load null)",
    ),
    "alpha_pattern": (
        _bounded(_positive_number_map),
        "an object mapping patterns to positive numbers" + _ITEMS + " (PEFT cannot load null)",
    ),
    "target_modules": (
        _bounded(lambda v: (isinstance(v, str) and v != "") or (_is_str_list(v) and len(v) > 0)),
        "a non-empty list of module names" + _ITEMS + " or a regex string",
    ),
    "exclude_modules": (
        _optional(_bounded(lambda v: isinstance(v, str) or _is_str_list(v))),
        "null, a list of module names" + _ITEMS + " or a regex string",
    ),
    "modules_to_save": (
        _optional(_bounded(_is_str_list)),
        "null or a list of module names" + _ITEMS,
    ),
    "layers_to_transform": (
        _optional(
            _bounded(
                lambda v: (_is_int(v) and v >= 0) or (_is_int_list(v) and min(v, default=0) >= 0)
            )
        ),
        "null, a layer index or a list of layer indices" + _ITEMS,
    ),
    "layers_pattern": (
        _optional(_bounded(lambda v: isinstance(v, str) or _is_str_list(v))),
        "null, a string or a list of strings" + _ITEMS,
    ),
    "bias": (lambda v: v in ("none", "all", "lora_only"), "'none', 'all' or 'lora_only'"),
    "task_type": (_optional(lambda v: v in TASK_TYPES), "null or one of " + ", ".join(TASK_TYPES)),
    "base_model_name_or_path": (
        _optional(lambda v: isinstance(v, str) and len(v) <= MAX_BASE_MODEL_NAME),
        f"null or a string of at most {MAX_BASE_MODEL_NAME} characters",
    ),
    "revision": (_optional(lambda v: isinstance(v, str)), "null or a string"),
    "init_lora_weights": (
        _init_method,
        "true, false, 'pissa_niter_<n>' or one of " + ", ".join(repr(m) for m in INIT_METHODS),
    ),
    "trainable_token_indices": (
        _optional(_token_indices),
        "null, a non-empty list of token ids (>= 0) or an object mapping module names to such "
        "lists",
    ),
    "megatron_core": (
        _optional(lambda v: v == "megatron.core"),
        "null or 'megatron.core' (adapters of Megatron-LM models are not supported)",
    ),
    "ensure_weight_tying": _BOOL,
    "qalora_group_size": _POSITIVE_INT,
    "alora_invocation_tokens": (
        _optional(_token_ids),
        "null or a non-empty list of token ids (>= 0)",
    ),
    "auto_mapping": (_optional(lambda v: isinstance(v, dict)), "null or an object"),
    **{
        name: (_optional(lambda v: isinstance(v, dict)), "null or an object")
        for name in _SUBCONFIG_FIELDS
    },
}

_DEFAULTS: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 8,
    "lora_dropout": 0.0,
    "use_rslora": False,
    "use_dora": False,
    "lora_bias": False,
    "fan_in_fan_out": False,
    "rank_pattern": {},
    "alpha_pattern": {},
    "exclude_modules": None,
    "modules_to_save": None,
    "layers_to_transform": None,
    "layers_pattern": None,
    "bias": "none",
    "base_model_name_or_path": None,
    "trainable_token_indices": None,
}


def _compile(
    make: Callable[[str, str], SafePattern], pattern: str, where: str, problems: list[str]
) -> SafePattern | None:
    try:
        return make(pattern, where)
    except PatternError as exc:
        problems.append(str(exc))
        return None


def _check_subconfigs(values: dict[str, Any], problems: list[str]) -> None:
    """Fields of the nested sub-configs PEFT turns into dataclasses (eva_config, ...)."""
    for name, fields in _SUBCONFIG_FIELDS.items():
        sub = values.get(name)
        if not isinstance(sub, dict):
            continue
        for key, (check, expected) in fields.items():
            if key in sub and not check(sub[key]):
                problems.append(
                    f"config field '{name}.{key}' must be {expected}, got {_short(sub[key])}"
                )


def _check_combinations(values: dict[str, Any], problems: list[str]) -> None:
    """The rules between fields that LoraConfig.__post_init__ and PEFT's loader enforce."""
    target = values.get("target_modules")
    if isinstance(target, str):
        for name in ("layers_to_transform", "layers_pattern"):
            if values.get(name) is not None:
                problems.append(
                    f"config field '{name}' cannot be used when 'target_modules' is a string "
                    f"({target!r:.100}); list the module names instead, or set {name} to null"
                )
    elif values.get("layers_pattern") and values.get("layers_to_transform") is None:
        problems.append(
            "config field 'layers_pattern' is set but 'layers_to_transform' is null: PEFT "
            "needs both (or neither)"
        )
    init = values.get("init_lora_weights", True)
    if init == "corda":
        problems.append(
            "config field 'init_lora_weights' is 'corda': PEFT cannot load such an adapter "
            "without running preprocess_corda first; the trained weights do not depend on it, "
            "publish with init_lora_weights true"
        )
    if init == "loftq" and not (
        isinstance(values.get("loftq_config"), dict) and values["loftq_config"]
    ):
        problems.append(
            "config field 'loftq_config' must be set (an object with loftq_bits, loftq_iter) "
            "when 'init_lora_weights' is 'loftq'"
        )
    if values.get("lora_bias") is True:
        if not isinstance(init, bool):
            problems.append(
                f"config field 'lora_bias': lora_bias=true needs init_lora_weights true or "
                f"false, got {_short(init)}"
            )
        if values.get("use_dora") is True:
            problems.append("config field 'lora_bias': lora_bias=true cannot be used with DoRA")


@dataclass
class _Settings:
    """The config fields the tensor checks need, type-checked (None: unusable)."""

    r: int | None
    target_modules: list[str] | str | None
    target_regex: SafePattern | None
    exclude: list[str] | SafePattern | None
    rank_pattern: list[tuple[str, SafePattern, int]]
    layers_to_transform: list[int] | None
    layers_pattern: list[str] | None
    modules_to_save: list[str]
    config: dict[str, Any]
    budget: MatchBudget = field(default_factory=MatchBudget)


def _read_settings(config: dict[str, Any], problems: list[str]) -> _Settings:
    values: dict[str, Any] = dict(_DEFAULTS)
    for key, value in config.items():
        if key in _FIELD_CHECKS:
            check, expected = _FIELD_CHECKS[key]
            if not check(value):
                problems.append(f"config field '{key}' must be {expected}, got {_short(value)}")
                values[key] = None
                continue
        values[key] = value
    for key in _UNSUPPORTED_VARIANTS:
        if config.get(key) not in (None, False, [], {}):
            problems.append(
                f"config field '{key}' is set: this LoRA variant is not supported by the "
                "registry; publish a plain LoRA adapter"
            )
    if config.get("megatron_config") is not None:
        problems.append(
            f"config field 'megatron_config' is set ({_short(config['megatron_config'])}): "
            "adapters of Megatron-LM models are not supported (PEFT imports megatron to load "
            "them); publish with megatron_config null"
        )
    if "target_modules" not in config or config["target_modules"] is None:
        problems.append("config field 'target_modules' is missing: PEFT always writes it")
        values["target_modules"] = None
    _check_subconfigs(values, problems)
    _check_combinations(values, problems)

    target = values.get("target_modules")
    target_regex = None
    if isinstance(target, str) and target != "all-linear":
        target_regex = _compile(compile_pattern, target, "target_modules", problems)
    exclude: list[str] | SafePattern | None = values.get("exclude_modules")
    if isinstance(exclude, str):
        exclude = _compile(compile_pattern, exclude, "exclude_modules", problems)
    rank_pattern = []
    for key, rank in (values.get("rank_pattern") or {}).items():
        where = f"rank_pattern key {key[:100]!r}"
        compiled = _compile(rank_key_pattern, key, where, problems)
        if compiled is not None:
            rank_pattern.append((key, compiled, rank))
    for key in values.get("alpha_pattern") or {}:
        _compile(rank_key_pattern, key, f"alpha_pattern key {key[:100]!r}", problems)
    layers = values.get("layers_to_transform")
    pattern = values.get("layers_pattern")
    return _Settings(
        r=values.get("r"),
        target_modules=target,
        target_regex=target_regex,
        exclude=exclude,
        rank_pattern=rank_pattern,
        layers_to_transform=[layers] if _is_int(layers) else layers,
        layers_pattern=[pattern] if isinstance(pattern, str) else pattern,
        modules_to_save=values.get("modules_to_save") or [],
        config=values,
    )


# --------------------------------------------------------------------------- matching


def _layer_index(module: str, layers_pattern: list[str] | None) -> int | None:
    """The first layer index in a module path, as PEFT finds it for ``layers_to_transform``."""
    if not layers_pattern:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", module)
    else:
        match = None
        for pattern in layers_pattern:
            match = re.match(rf"(?:^|.*?\.){re.escape(pattern)}\.(?P<idx>\d+)\.", module)
            if match:
                break
    return int(match.group("idx")) if match else None


def _dot_suffixes(module: str) -> set[str]:
    """``module`` and every part of it after a ``.`` (``a.b.c`` -> a.b.c, b.c, c)."""
    return {module} | {module[i + 1 :] for i, ch in enumerate(module) if ch == "."}


def _in_name_list(module: str, names: list[str]) -> bool:
    """PEFT's ``module in names or any(module.endswith("." + n) for n in names)``.

    A set lookup of the module's dot-suffixes: linear in the name, whatever the list's length.
    """
    return not _dot_suffixes(module).isdisjoint(names)


def _is_targeted(module: str, s: _Settings) -> bool:
    """Whether PEFT would put LoRA on ``module`` (target_modules, layers, exclusions)."""
    if isinstance(s.exclude, SafePattern):
        if s.exclude.fullmatch(module, s.budget):
            return False
    elif s.exclude and _in_name_list(module, s.exclude):
        return False
    target = s.target_modules
    if target == "all-linear":
        return True
    if isinstance(target, str):
        return s.target_regex is not None and s.target_regex.fullmatch(module, s.budget)
    if not target:
        return False
    if module in target:
        return True
    if not _in_name_list(module, target):
        return False
    if s.layers_to_transform:
        index = _layer_index(module, s.layers_pattern)
        return index is not None and index in s.layers_to_transform
    return True


def _expected_rank(module: str, s: _Settings) -> tuple[int | None, str]:
    for key, compiled, rank in s.rank_pattern:
        if compiled.match(module, s.budget):
            return rank, f"rank_pattern[{key!r}]"
    return s.r, "r"


def _is_module_to_save(rest: str, s: _Settings) -> bool:
    r"""``re.match(rf"(^|.*\.){m}($|\..*)", rest)`` for a literal ``m``, in linear time."""
    dotted = f".{rest}."
    return any(f".{m}." in dotted for m in s.modules_to_save)


# --------------------------------------------------------------------------- tensors


def _group_tensors(
    tensors: dict[str, TensorInfo], problems: list[str]
) -> tuple[dict[str, dict[str, TensorInfo]], dict[str, TensorInfo]]:
    """Split tensors into LoRA parts per module and everything else (prefix stripped)."""
    groups: dict[str, dict[str, TensorInfo]] = {}
    others: dict[str, TensorInfo] = {}
    bad_prefix = [n for n in tensors if not n.startswith(PEFT_PREFIX)]
    if bad_prefix:
        problems.append(
            f"{len(bad_prefix)} tensor name(s) do not start with '{PEFT_PREFIX}' "
            f"(e.g. {bad_prefix[0][:120]!r}); save the adapter with PEFT save_pretrained"
        )
    for name, info in tensors.items():
        if not name.startswith(PEFT_PREFIX):
            continue
        if len(name) > MAX_TENSOR_NAME:
            problems.append(
                f"tensor {name[:80]!r}... has a {len(name)}-character name; "
                f"the limit is {MAX_TENSOR_NAME}"
            )
            continue
        rest = name[len(PEFT_PREFIX) :]
        for suffix, part in _SUFFIXES:
            if rest.endswith(suffix) and len(rest) > len(suffix):
                groups.setdefault(rest[: -len(suffix)], {})[part] = info
                break
        else:
            if ".lora_" in rest or rest.startswith("lora_"):
                problems.append(
                    f"tensor {name[:160]!r} is not a LoRA tensor this registry knows "
                    "(lora_A.weight, lora_B.weight, lora_B.bias, lora_embedding_A/B, "
                    "lora_magnitude_vector)"
                )
            else:
                others[rest] = info
    return groups, others


def _check_module(
    module: str, parts: dict[str, TensorInfo], s: _Settings, problems: list[str]
) -> LoraModuleShape | None:
    linear = "A" in parts or "B" in parts
    embedding = "EA" in parts or "EB" in parts
    if linear and embedding:
        problems.append(f"{module}: has both lora_A/lora_B and lora_embedding_A/B tensors")
        return None
    if not linear and not embedding:
        problems.append(f"{module}: has {', '.join(sorted(parts))} but no lora_A/lora_B tensors")
        return None
    kind = "linear" if linear else "embedding"
    a_key, b_key = ("A", "B") if linear else ("EA", "EB")
    a_name, b_name = ("lora_A", "lora_B") if linear else ("lora_embedding_A", "lora_embedding_B")
    a, b = parts.get(a_key), parts.get(b_key)
    if a is None or b is None:
        have, missing = (a_name, b_name) if b is None else (b_name, a_name)
        problems.append(f"{module}: has {have} but no {missing}")
        return None
    before = len(problems)
    for label, info in ((a_name, a), (b_name, b)):
        if len(info.shape) != 2:
            problems.append(
                f"{module}: {label} is {len(info.shape)}-D {list(info.shape)}; only Linear and "
                "Embedding LoRA modules (2-D factors) are supported"
            )
        if info.dtype not in FLOAT_DTYPES:
            problems.append(f"{module}: {label} has dtype {info.dtype}; expected F16, BF16 or F32")
    if len(problems) > before:
        return None
    rank, in_features = a.shape
    out_features, b_rank = b.shape
    if b_rank != rank:
        problems.append(
            f"{module}: {a_name} has rank {rank} ({list(a.shape)}) but {b_name} has rank "
            f"{b_rank} ({list(b.shape)})"
        )
    expected, source = _expected_rank(module, s)
    if expected is not None and rank != expected:
        problems.append(f"{module}: rank is {rank} but the config says {expected} ({source})")
    if rank == 0:
        problems.append(f"{module}: rank is 0")
    if s.target_modules is not None and not _is_targeted(module, s):
        problems.append(
            f"{module}: has LoRA tensors but is not matched by target_modules "
            f"{s.target_modules!r:.200}"
            + (" (with layers_to_transform)" if s.layers_to_transform else "")
            + (" or is excluded by exclude_modules" if s.exclude else "")
        )
    _check_extras(module, parts, out_features, s, problems)
    return LoraModuleShape(module, rank, in_features, out_features, kind)


def _check_extras(
    module: str,
    parts: dict[str, TensorInfo],
    out_features: int,
    s: _Settings,
    problems: list[str],
) -> None:
    """lora_B.bias (lora_bias) and lora_magnitude_vector (DoRA): presence and [out] shape."""
    for part, flag, label in (
        ("B_bias", "lora_bias", "lora_B.bias"),
        ("M", "use_dora", "lora_magnitude_vector"),
    ):
        info = parts.get(part)
        enabled = s.config.get(flag) is True
        if info is None:
            if enabled and part == "M":
                problems.append(f"{module}: use_dora is true but there is no {label}")
            continue
        if not enabled:
            problems.append(f"{module}: has {label} but the config has {flag}=false")
        elif info.shape != (out_features,):
            problems.append(
                f"{module}: {label} has shape {list(info.shape)}; expected [{out_features}]"
            )


def _check_other_tensor(
    rest: str,
    info: TensorInfo,
    modules: dict[str, LoraModuleShape],
    s: _Settings,
    problems: list[str],
) -> None:
    """Non-LoRA tensors: allowed only where PEFT would have saved them."""
    if _is_module_to_save(rest, s):
        return
    if s.config.get("bias") in ("all", "lora_only") and rest.endswith(".bias"):
        return
    if s.config.get("trainable_token_indices") is not None and _token_module(rest):
        return  # checked by _check_trainable_tokens
    module, _, param = rest.rpartition(".")
    if module.endswith(".base_layer"):
        module = module[: -len(".base_layer")]
    lora = modules.get(module)
    if lora is not None and lora.kind == "embedding" and param == "weight":
        expected = (lora.in_features, lora.out_features)
        if info.shape != expected:
            problems.append(
                f"{module}: saved embedding weight has shape {list(info.shape)} but the LoRA "
                f"factors imply {list(expected)}"
            )
        return
    if module.rsplit(".", 1)[-1] in EMBEDDING_NAMES and param == "weight" and len(info.shape) == 2:
        return  # a resized or targeted embedding layer, saved in full by PEFT
    problems.append(
        f"unexpected tensor '{PEFT_PREFIX}{rest[:160]}': not a LoRA tensor and not covered by "
        "modules_to_save, bias, trainable_token_indices or an embedding layer"
    )


#: Heads PEFT adds to ``modules_to_save`` for classification and QA tasks; a model
#: without such a head saves no tensor for them.
TASK_HEADS = frozenset({"classifier", "score", "qa_outputs"})


def _check_modules_to_save(
    others: dict[str, TensorInfo], s: _Settings, problems: list[str]
) -> None:
    """Each ``modules_to_save`` entry needs its saved weights: PEFT's loader reads them.

    A dot-free entry is looked up in the set of name segments (linear); a dotted
    one is searched for, as :func:`_is_module_to_save` does.
    """
    segments = {seg for rest in others for seg in rest.split(".")}
    dotted = [f".{rest}." for rest in others]
    for name in dict.fromkeys(s.modules_to_save):
        if name in TASK_HEADS:
            continue
        if ("." not in name and name in segments) or (
            "." in name and any(f".{name}." in d for d in dotted)
        ):
            continue
        problems.append(
            f"modules_to_save entry {name[:100]!r} has no saved tensor "
            f"('{PEFT_PREFIX}<...>{name[:100]}.weight'): PEFT cannot load the adapter; "
            "remove the entry or save the module"
        )


#: Where PEFT saves the trainable-token rows of an embedding layer.
TOKENS_SUFFIX = ".token_adapter.trainable_tokens_delta"


def _token_module(rest: str) -> str | None:
    """The embedding module a trainable-token delta belongs to, or None."""
    if rest.endswith(TOKENS_SUFFIX) and len(rest) > len(TOKENS_SUFFIX):
        return rest[: -len(TOKENS_SUFFIX)]
    return None


def _check_trainable_tokens(
    others: dict[str, TensorInfo], s: _Settings, problems: list[str]
) -> None:
    """``trainable_token_indices`` and the deltas PEFT's loader reads (one per layer, [n, dim]).

    A list is for the input embedding (one delta tensor); an object maps module
    names to lists, matched like PEFT does (``name.endswith(key)``).
    """
    indices = s.config.get("trainable_token_indices")
    if indices is None:
        return
    deltas = {m: info for rest, info in others.items() if (m := _token_module(rest))}
    wanted: list[tuple[str, list[str], list[int]]] = []
    if isinstance(indices, list):
        if len(deltas) != 1:
            problems.append(
                f"trainable_token_indices lists token ids for the input embedding, so the "
                f"adapter needs one '<embedding>{TOKENS_SUFFIX}' tensor; found "
                + (f"{len(deltas)}" if deltas else "no trainable-token tensor")
            )
        wanted.append(("trainable_token_indices", list(deltas), indices))
    else:
        for key, ids in indices.items():
            matched = [m for m in deltas if m.endswith(key)]
            if not matched:
                problems.append(
                    f"trainable_token_indices[{key[:100]!r}]: no trainable-token tensor "
                    f"'{PEFT_PREFIX}<...>{key[:100]}{TOKENS_SUFFIX}' (PEFT's loader needs it)"
                )
            wanted.append((f"trainable_token_indices[{key[:100]!r}]", matched, ids))
        for m in deltas:
            if not any(m.endswith(key) for key in indices):
                problems.append(
                    f"tensor '{PEFT_PREFIX}{m[:160]}{TOKENS_SUFFIX}': module {m[:160]!r} is not "
                    "listed in trainable_token_indices"
                )
    for where, modules, ids in wanted:
        for m in modules:
            info = deltas[m]
            if len(info.shape) != 2 or info.dtype not in FLOAT_DTYPES:
                problems.append(
                    f"{m[:160]}: trainable_tokens_delta must be a 2-D float tensor, got "
                    f"{info.dtype} {list(info.shape)}"
                )
            elif info.shape[0] != len(ids):
                problems.append(
                    f"{m[:160]}: trainable_tokens_delta has {info.shape[0]} rows but {where} "
                    f"lists {len(ids)} token(s)"
                )


def _ancestors(module: str) -> list[str]:
    """The proper parent paths of ``module`` (``a.b.c`` -> a, a.b)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _check_containers_not_targeted(
    modules: dict[str, LoraModuleShape], s: _Settings, problems: list[str]
) -> None:
    """target_modules may not match a module that holds the adapted ones.

    Such a parent (a decoder layer, an attention block, the model itself) is no
    Linear/Embedding/Conv layer: PEFT refuses to put LoRA on it. A regex must not
    match the root module (the empty name) either.
    """
    target = s.target_modules
    if target is None or target == "all-linear":
        return
    parents = sorted({a for m in modules for a in _ancestors(m)})
    regex = s.target_regex if isinstance(target, str) else None
    if regex is not None and regex.fullmatch("", s.budget):
        problems.append(
            f"target_modules {target!r:.200} matches the root module (the empty name); "
            "PEFT refuses it"
        )
    for parent in parents:
        if _is_targeted(parent, s):
            problems.append(
                f"target_modules {target!r:.200} matches {parent[:160]!r}, which holds adapted "
                "modules and is not a Linear or Embedding layer: PEFT refuses to put LoRA on it"
            )
            return


def _raise_problems(problems: list[str]) -> None:
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    raise InvalidConfig(
        f"adapter config and tensors disagree ({len(problems)} problem(s)): {listed}"
        + (f"; and {more} more (see details)" if more > 0 else ""),
        details=problems[:MAX_DETAILS],
    )


def _int8_factors(tensors: dict[str, TensorInfo], problems: list[str]) -> dict[str, TensorInfo]:
    """Check the qweight/scales pairs of an int8 adapter; return one F32-like entry per factor.

    The returned entries (``...lora_A.weight`` with the qweight's shape) let the
    plain-adapter checks verify factors, ranks and targets.
    """
    qweights: dict[str, TensorInfo] = {}
    scales: dict[str, TensorInfo] = {}
    for name, info in tensors.items():
        stem, _, kind = name.rpartition(".")
        if not stem.endswith((".lora_A", ".lora_B")) or kind not in ("qweight", "scales"):
            problems.append(
                f"tensor {name[:160]!r} does not belong in an int8 adapter ({INT8_FORMAT}): "
                "it holds only '<module>.lora_A|lora_B.qweight' and '.scales' tensors"
            )
            continue
        (qweights if kind == "qweight" else scales)[stem] = info
    factors: dict[str, TensorInfo] = {}
    for stem in sorted(set(qweights) | set(scales)):
        q, s = qweights.get(stem), scales.get(stem)
        if q is None or s is None:
            have, missing = ("scales", "qweight") if q is None else ("qweight", "scales")
            problems.append(f"{stem[:160]}: has {have} but no {missing} (int8 adapter)")
            continue
        before = len(problems)
        if q.dtype != "I8" or len(q.shape) != 2:
            problems.append(
                f"{stem[:160]}.qweight must be a 2-D I8 tensor, got {q.dtype} {list(q.shape)}"
            )
        if s.dtype != "F32" or len(s.shape) != 1:
            problems.append(
                f"{stem[:160]}.scales must be a 1-D F32 tensor, got {s.dtype} {list(s.shape)}"
            )
        elif len(q.shape) == 2 and s.shape[0] != q.shape[0]:
            problems.append(
                f"{stem[:160]}.scales has {s.shape[0]} entries but qweight has {q.shape[0]} "
                "rows (one scale per row)"
            )
        if len(problems) == before:
            factors[f"{stem}.weight"] = TensorInfo("F32", q.shape, q.start, q.end)
    return factors


def validate_lora_config(
    config: dict[str, Any],
    tensors: dict[str, TensorInfo],
    metadata: dict[str, str] | None = None,
) -> LoraSummary:
    """Check a LoRA config and its tensors together; return what the adapter holds.

    ``metadata`` is the safetensors header metadata: when its ``format`` is
    :data:`INT8_FORMAT` the tensors are read as an int8 adapter (module docstring).
    Raises :class:`InvalidConfig` listing every problem (``details`` holds the list).
    """
    if not isinstance(config, dict):
        raise InvalidConfig(f"the config must be a JSON object, got {type(config).__name__}")
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise InvalidConfig(
            f"only LoRA adapters are accepted; the config has peft_type {peft_type!r:.100} "
            "(expected 'LORA')"
        )
    problems: list[str] = []
    settings = _read_settings(config, problems)
    stored = tensors
    if (metadata or {}).get("format") == INT8_FORMAT:
        tensors = _int8_factors(tensors, problems)
    groups, others = _group_tensors(tensors, problems)
    modules: dict[str, LoraModuleShape] = {}
    for module, parts in sorted(groups.items()):
        shape = _check_module(module, parts, settings, problems)
        if shape is not None:
            modules[module] = shape
    if not groups and not problems:
        problems.append("the safetensors file holds no LoRA tensors (lora_A/lora_B)")
    for rest, info in others.items():
        _check_other_tensor(rest, info, modules, settings, problems)
    _check_trainable_tokens(others, settings, problems)
    _check_modules_to_save(others, settings, problems)
    _check_containers_not_targeted(modules, settings, problems)
    if problems:
        _raise_problems(problems)
    values = settings.config
    target = values["target_modules"]
    return LoraSummary(
        r=values["r"],
        lora_alpha=values["lora_alpha"],
        use_rslora=values["use_rslora"],
        target_modules=sorted(set(target)) if isinstance(target, list) else target,
        modules=modules,
        parameter_count=sum(info.numel for info in stored.values()),
        base_model_name_or_path=values["base_model_name_or_path"],
        fan_in_fan_out=values["fan_in_fan_out"],
        use_dora=values["use_dora"],
        extra_tensors=tuple(PEFT_PREFIX + rest for rest in others),
    )
