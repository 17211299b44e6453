"""LoRA factors and the PEFT state-dict format.

A LoRA module's delta is ``ΔW = scale · B @ A`` with ``A: [r, k]`` (in features
``k``), ``B: [d, r]`` (out features ``d``) and ``scale = alpha / r``
(``alpha / sqrt(r)`` with rsLoRA). :class:`LoraFactors` holds one module;
adapters are ``dict[module_path, LoraFactors]`` where ``module_path`` is the
module's name inside the base model (``model.layers.0.self_attn.q_proj``).

:func:`split_peft_state_dict` reads a PEFT ``adapter_model.safetensors`` state
dict plus its ``adapter_config.json``; :func:`build_peft_state_dict` writes the
pair back so that ``PeftModel.from_pretrained`` loads the same deltas.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from workers.errors import JobInputError

__all__ = [
    "LoraFactors",
    "build_peft_state_dict",
    "lora_scale",
    "parse_lora_key",
    "pattern_value",
    "peft_adapter_config",
    "resolve_device",
    "split_peft_state_dict",
]

_PEFT_PREFIX = "base_model.model."
# base_model.model.<path>.lora_A.weight  or, from a live model, ...lora_A.<adapter>.weight
_KEY_RE = re.compile(
    r"^(?:base_model\.model\.)?(?P<path>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$"
)


@dataclass
class LoraFactors:
    """One LoRA module: ``ΔW = scale · B @ A`` with ``A: [r, k]`` and ``B: [d, r]``."""

    A: Tensor
    B: Tensor
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.A.ndim != 2 or self.B.ndim != 2:
            raise JobInputError(
                f"LoRA factors must be 2-D, got A{tuple(self.A.shape)} and B{tuple(self.B.shape)}"
            )
        if self.B.shape[1] != self.A.shape[0]:
            raise JobInputError(
                f"rank mismatch: B is {tuple(self.B.shape)} (d, r) but A is "
                f"{tuple(self.A.shape)} (r, k); B's columns must equal A's rows"
            )
        if self.A.shape[0] < 1:
            raise JobInputError("a LoRA module needs rank >= 1, got rank 0")
        if not (self.A.is_floating_point() and self.B.is_floating_point()):
            raise JobInputError(
                f"LoRA factors must be floating point, got {self.A.dtype} and {self.B.dtype}"
            )
        if not math.isfinite(float(self.scale)):
            raise JobInputError(f"LoRA scale must be finite, got {self.scale!r}")
        self.scale = float(self.scale)

    @property
    def rank(self) -> int:
        """The rank ``r`` (rows of A)."""
        return int(self.A.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(d, k)`` = (out features, in features) of the delta."""
        return int(self.B.shape[0]), int(self.A.shape[1])

    def delta(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The dense delta ``scale · B @ A`` in ``dtype`` (small modules and tests only)."""
        return self.scale * (self.B.to(dtype) @ self.A.to(dtype))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """A copy with both factors moved to ``device`` and/or cast to ``dtype``."""
        return LoraFactors(
            self.A.to(device=device, dtype=dtype), self.B.to(device=device, dtype=dtype), self.scale
        )


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as a torch.device; ``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise JobInputError(f"invalid device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise JobInputError("device 'cuda' requested but CUDA is not available; use 'cpu'")
    return resolved


def lora_scale(r: int, alpha: float, use_rslora: bool = False) -> float:
    """PEFT's scaling factor: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
    if not isinstance(r, numbers.Integral) or isinstance(r, bool) or r < 1:
        raise JobInputError(f"LoRA rank must be a positive integer, got {r!r}")
    if not isinstance(alpha, numbers.Real) or not math.isfinite(alpha):
        raise JobInputError(f"lora_alpha must be a finite number, got {alpha!r}")
    return float(alpha) / (math.sqrt(r) if use_rslora else float(r))


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise JobInputError(
        f"adapter config must be a mapping (adapter_config.json) or a LoraConfig, "
        f"got {type(config).__name__}"
    )


def pattern_value(patterns: Mapping[str, Any] | None, path: str, default: Any) -> Any:
    """Value of the first ``rank_pattern``/``alpha_pattern`` key matching ``path`` (PEFT's rule).

    PEFT matches a key when ``re.match(rf"(.*\\.)?({key})$", path)`` succeeds.
    """
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def parse_lora_key(key: str) -> tuple[str, str] | None:
    """``(module_path, "A" | "B")`` for a PEFT LoRA weight key, else ``None``.

    Accepts ``base_model.model.<path>.lora_A.weight`` (saved adapters) and
    ``...lora_A.<adapter>.weight`` (a live model's state dict).
    """
    match = _KEY_RE.match(key)
    return None if match is None else (match["path"], match["ab"])


def split_peft_state_dict(
    state_dict: Mapping[str, Tensor], config: Mapping[str, Any] | Any
) -> dict[str, LoraFactors]:
    """Split a PEFT LoRA state dict into ``{module_path: LoraFactors}``.

    Honours ``r``/``lora_alpha``, ``rank_pattern``/``alpha_pattern`` and
    ``use_rslora``. Keys look like ``base_model.model.<path>.lora_A.weight``.
    DoRA, embedding LoRA, ``fan_in_fan_out`` and extra trainable tensors are refused.
    """
    cfg = _config_dict(config)
    peft_type = cfg.get("peft_type", "LORA")
    peft_type = str(getattr(peft_type, "value", peft_type)).upper()  # PeftType enum or str
    if peft_type != "LORA":
        raise JobInputError(
            f"only LoRA adapters are supported, this config has peft_type={peft_type}"
        )
    if cfg.get("use_dora"):
        raise JobInputError("DoRA adapters (use_dora=true) are not supported; use a plain LoRA")
    if cfg.get("fan_in_fan_out"):
        raise JobInputError("fan_in_fan_out=true (Conv1D layers) is not supported")
    if "r" not in cfg or "lora_alpha" not in cfg:
        raise JobInputError("adapter config must contain 'r' and 'lora_alpha'")

    halves: dict[str, dict[str, Tensor]] = {}
    for key, tensor in state_dict.items():
        parsed = parse_lora_key(key)
        if parsed is None:
            raise JobInputError(
                f"unsupported tensor {key!r}: only '<module>.lora_A.weight' and "
                f"'<module>.lora_B.weight' are supported (no DoRA, embeddings, biases or "
                f"modules_to_save)"
            )
        pair = halves.setdefault(parsed[0], {})
        if parsed[1] in pair:
            raise JobInputError(
                f"module {parsed[0]!r} has two lora_{parsed[1]} tensors (several adapters in "
                f"one state dict?); pass one adapter's tensors"
            )
        pair[parsed[1]] = tensor
    if not halves:
        raise JobInputError("the state dict contains no LoRA tensors")

    use_rslora = bool(cfg.get("use_rslora", False))
    modules: dict[str, LoraFactors] = {}
    for path in sorted(halves):
        pair = halves[path]
        if set(pair) != {"A", "B"}:
            missing = "lora_B" if "A" in pair else "lora_A"
            raise JobInputError(
                f"module {path!r} has no {missing}.weight; the state dict is incomplete"
            )
        factors = LoraFactors(pair["A"], pair["B"])
        expected_r = pattern_value(cfg.get("rank_pattern"), path, cfg["r"])
        if factors.rank != expected_r:
            raise JobInputError(
                f"module {path!r}: tensors have rank {factors.rank} but the config says "
                f"{expected_r} (r / rank_pattern); fix the config"
            )
        alpha = pattern_value(cfg.get("alpha_pattern"), path, cfg["lora_alpha"])
        factors.scale = lora_scale(factors.rank, alpha, use_rslora)
        modules[path] = factors
    return modules


def peft_adapter_config(
    modules: Mapping[str, LoraFactors],
    *,
    base_model_name_or_path: str | None = None,
    task_type: str | None = "CAUSAL_LM",
) -> dict[str, Any]:
    """The ``adapter_config.json`` dict that makes PEFT apply each module's own scale.

    Each module's scale goes into its alpha (``alpha = scale · r``, no rsLoRA).
    ``r`` is the largest rank; ``rank_pattern``/``alpha_pattern`` list the modules
    that differ, keyed by full module path. ``target_modules`` lists full module
    paths, so PEFT wraps exactly these modules.
    """
    if not modules:
        raise JobInputError("no modules to write: the adapter would be empty")
    ranks = {path: f.rank for path, f in modules.items()}
    alphas = {path: f.scale * f.rank for path, f in modules.items()}
    r = max(ranks.values())
    at_r = [alphas[p] for p in sorted(modules) if ranks[p] == r]
    lora_alpha = max(set(at_r), key=at_r.count)
    return {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "r": r,
        "lora_alpha": lora_alpha,
        "rank_pattern": {p: ranks[p] for p in sorted(modules) if ranks[p] != r},
        "alpha_pattern": {p: alphas[p] for p in sorted(modules) if alphas[p] != lora_alpha},
        "target_modules": sorted(modules),
        "use_rslora": False,
        "use_dora": False,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }


def build_peft_state_dict(
    modules: Mapping[str, LoraFactors],
    *,
    dtype: torch.dtype | None = None,
    base_model_name_or_path: str | None = None,
    task_type: str | None = "CAUSAL_LM",
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Write ``{module_path: LoraFactors}`` as a PEFT state dict plus its adapter config.

    The tensors are the factors unchanged (cast to ``dtype`` if given, moved to
    CPU, contiguous) under ``base_model.model.<path>.lora_{A,B}.weight``; the
    config comes from :func:`peft_adapter_config`, so ``PeftModel.from_pretrained``
    reproduces every module's ``scale · B @ A``.
    """
    config = peft_adapter_config(
        modules, base_model_name_or_path=base_model_name_or_path, task_type=task_type
    )
    state: dict[str, Tensor] = {}
    for path in sorted(modules):
        f = modules[path]
        a, b = f.A.detach(), f.B.detach()
        if dtype is not None:
            a, b = a.to(dtype), b.to(dtype)
        state[f"{_PEFT_PREFIX}{path}.lora_A.weight"] = a.cpu().contiguous()
        state[f"{_PEFT_PREFIX}{path}.lora_B.weight"] = b.cpu().contiguous()
    return state, config
