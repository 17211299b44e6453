"""Compress a LoRA adapter: lower rank, lower precision, int8 (docs/design.md §7).

All three report the error they introduce on the deltas, relative Frobenius
``‖ΔW' - ΔW‖ / ‖ΔW‖`` per module and overall (``sqrt(Σ err² / Σ ‖ΔW‖²)``),
computed from the factors without forming a dense delta.

int8 storage format (``format = "loreg-lora-int8-rowwise"`` in the safetensors
metadata): for every module path ``P`` and factor ``X`` in ``A``, ``B``::

    base_model.model.P.lora_X.qweight   int8    same shape as the factor
    base_model.model.P.lora_X.scales    float32 one per row (A: [r], B: [d])

with the factor recovered as ``qweight.float() * scales[:, None]``
(:func:`dequantize_int8`). Module LoRA scales live in the adapter config, as
for a plain PEFT adapter (:func:`workers.ops.lora.peft_adapter_config`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from loreg.constants import INT8_FORMAT
from loreg.vocabulary import CAST_PRECISIONS, Precision
from workers.errors import JobInputError
from workers.ops.lora import (
    LoraFactors,
    parse_lora_key,
    resolve_device,
    split_peft_state_dict,
)
from workers.ops.svd import lowrank_svd

__all__ = [
    "INT8_FORMAT",
    "CompressResult",
    "CompressStats",
    "ModuleError",
    "QuantizedFactor",
    "QuantizedModule",
    "cast_precision",
    "dequantize_int8",
    "int8_state_dict",
    "quantize_int8",
    "read_int8_state_dict",
    "reduce_rank",
]

_PREFIX = "base_model.model."
_DTYPES = {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


@dataclass
class ModuleError:
    """Per-module squared Frobenius norms (float64 sums) of the delta and of the error."""

    rank: int
    target_norm2: float  # ‖ΔW‖²
    error_norm2: float  # ‖ΔW' - ΔW‖²

    @property
    def relative_error(self) -> float:
        """``‖ΔW' - ΔW‖ / ‖ΔW‖`` (0 for a zero delta)."""
        return 0.0 if self.target_norm2 <= 0 else math.sqrt(self.error_norm2 / self.target_norm2)


@dataclass
class CompressStats:
    """What a compression did, for the result card."""

    method: str
    params: dict[str, Any]
    bytes_before: int
    bytes_after: int
    modules: dict[str, ModuleError] = field(default_factory=dict)

    @property
    def relative_error(self) -> float:
        """Overall ``sqrt(Σ ‖ΔW' - ΔW‖² / Σ ‖ΔW‖²)`` over modules."""
        target = sum(m.target_norm2 for m in self.modules.values())
        error = sum(m.error_norm2 for m in self.modules.values())
        return 0.0 if target <= 0 else math.sqrt(error / target)

    @property
    def energy_kept(self) -> float:
        """``1 - relative_error²``: for rank reduction, Σ kept σ² / Σ σ²."""
        return 1.0 - self.relative_error**2

    @property
    def size_ratio(self) -> float:
        """Bytes of the tensors after / before."""
        return self.bytes_after / self.bytes_before if self.bytes_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (overall figures plus one entry per module)."""
        return {
            "method": self.method,
            "params": dict(self.params),
            "relative_error": self.relative_error,
            "energy_kept": self.energy_kept,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "size_ratio": self.size_ratio,
            "modules": {
                path: {
                    "rank": m.rank,
                    "relative_error": m.relative_error,
                    "energy_kept": 1.0 - m.relative_error**2,
                }
                for path, m in self.modules.items()
            },
        }


@dataclass
class CompressResult:
    """The compressed adapter and its statistics."""

    modules: dict[str, LoraFactors]
    stats: CompressStats


def _nbytes(modules: Mapping[str, LoraFactors]) -> int:
    return sum(
        f.A.numel() * f.A.element_size() + f.B.numel() * f.B.element_size()
        for f in modules.values()
    )


def _check_modules(modules: Mapping[str, LoraFactors]) -> None:
    if not modules:
        raise JobInputError("the adapter has no modules")
    for path, f in modules.items():
        if not isinstance(f, LoraFactors):
            raise JobInputError(f"module {path!r} is not a LoraFactors")


def _delta_error(old: LoraFactors, new: LoraFactors, device: torch.device) -> tuple[float, float]:
    """(‖ΔW‖², ‖ΔW' - ΔW‖²) from the factors via Gram matrices, in float64."""
    f64 = torch.float64
    u_old, v_old = old.B.to(device, f64) * old.scale, old.A.to(device, f64)
    u_new, v_new = new.B.to(device, f64) * new.scale, new.A.to(device, f64)
    u = torch.cat([u_new, -u_old], 1)
    v = torch.cat([v_new, v_old], 0)
    target = float(((u_old.T @ u_old) * (v_old @ v_old.T)).sum())
    error = float(((u.T @ u) * (v @ v.T)).sum())
    return max(target, 0.0), max(error, 0.0)


# --------------------------------------------------------------------------- rank


def reduce_rank(
    modules: Mapping[str, LoraFactors],
    rank: int | None = None,
    energy: float | None = None,
    *,
    device: torch.device | str | None = None,
) -> CompressResult:
    """Truncated SVD of every module's delta (QR method), to ``rank`` or to kept ``energy``.

    Give exactly one: ``rank`` (modules already at or below it keep their rank,
    re-factored) or ``energy`` in (0, 1], the fraction of Σ σ² each module keeps
    at least (the smallest such rank). Per module the error² equals the sum of
    the dropped σ² (the reported figure is measured on the returned factors, so
    it includes their rounding to the input dtype). Results have scale 1, the
    input dtype and device.
    """
    _check_modules(modules)
    if (rank is None) == (energy is None):
        raise JobInputError("reduce_rank needs exactly one of rank (an int) or energy (in (0, 1])")
    if rank is not None and (
        not isinstance(rank, numbers.Integral) or isinstance(rank, bool) or rank < 1
    ):
        raise JobInputError(f"rank must be a positive integer, got {rank!r}")
    if energy is not None and (not isinstance(energy, numbers.Real) or not 0.0 < energy <= 1.0):
        raise JobInputError(f"energy must be in (0, 1], got {energy!r}")
    dev = resolve_device(device)
    out: dict[str, LoraFactors] = {}
    stats = CompressStats(
        "reduce_rank", {"rank": rank, "energy": energy, "device": str(dev)}, _nbytes(modules), 0
    )
    for path in sorted(modules):
        f = modules[path]
        B, A, sigma = lowrank_svd(f.B.to(dev, torch.float64) * f.scale, f.A.to(dev, torch.float64))
        if rank is not None:
            keep = min(int(rank), sigma.numel())
        else:
            power = sigma**2
            cumulative = torch.cumsum(power, 0)
            # smallest r with Σ_{≤r} σ² ≥ energy · Σ σ² (tiny slack for rounding)
            needed = float(energy) * float(power.sum()) * (1 - 1e-12)
            keep = int((cumulative < needed).sum()) + 1
            keep = min(keep, sigma.numel())
        out[path] = LoraFactors(
            A[:keep].to(f.A.device, f.A.dtype), B[:, :keep].to(f.B.device, f.B.dtype), 1.0
        )
        # error² = Σ dropped σ², plus the rounding of the cast back to the input dtype
        target, error = _delta_error(f, out[path], dev)
        stats.modules[path] = ModuleError(keep, target, error)
    stats.bytes_after = _nbytes(out)
    return CompressResult(out, stats)


# --------------------------------------------------------------------------- precision


def cast_precision(
    modules: Mapping[str, LoraFactors], precision: str, *, device: torch.device | str | None = None
) -> CompressResult:
    """Cast every factor to ``fp16`` or ``bf16``; report the delta error this causes.

    Refuses fp16 when a value is beyond its range (±65504): use bf16 then.
    """
    _check_modules(modules)
    if precision not in CAST_PRECISIONS:
        raise JobInputError(
            f"precision must be one of {[str(p) for p in CAST_PRECISIONS]}, got {precision!r}"
        )
    dtype = _DTYPES[precision]
    limit = torch.finfo(dtype).max
    dev = resolve_device(device)
    out: dict[str, LoraFactors] = {}
    stats = CompressStats("cast_precision", {"precision": precision}, _nbytes(modules), 0)
    for path in sorted(modules):
        f = modules[path]
        peak = max(float(f.A.abs().max()), float(f.B.abs().max()))
        if peak > limit:
            raise JobInputError(
                f"module {path!r} has a value of magnitude {peak:g}, beyond {precision}'s range "
                f"({limit:g}); use bf16"
            )
        cast = LoraFactors(f.A.to(dtype), f.B.to(dtype), f.scale)
        out[path] = cast
        target, error = _delta_error(f, cast, dev)
        stats.modules[path] = ModuleError(f.rank, target, error)
    stats.bytes_after = _nbytes(out)
    return CompressResult(out, stats)


# --------------------------------------------------------------------------- int8


@dataclass
class QuantizedFactor:
    """A factor as int8 values with one float32 absmax scale per row."""

    qweight: Tensor  # int8, the factor's shape
    scales: Tensor  # float32, [rows]

    def dequantize(self) -> Tensor:
        """``qweight · scales[:, None]`` in float32."""
        return self.qweight.to(torch.float32) * self.scales[:, None]


@dataclass
class QuantizedModule:
    """An int8 LoRA module: ``ΔW = scale · B @ A`` with A and B quantized row-wise."""

    A: QuantizedFactor
    B: QuantizedFactor
    scale: float


def _quantize_rows(x: Tensor) -> QuantizedFactor:
    x32 = x.to(torch.float32)
    scales = x32.abs().amax(dim=1) / 127.0
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(x32 / safe[:, None]).clamp_(-127, 127).to(torch.int8)
    return QuantizedFactor(q, scales)


def quantize_int8(
    modules: Mapping[str, LoraFactors], *, device: torch.device | str | None = None
) -> tuple[dict[str, QuantizedModule], CompressStats]:
    """Quantize A and B to int8 with per-row absmax scales (``scale = max|row| / 127``).

    Every dequantized entry is within ``scale / 2`` of the original. The stats
    report the delta error of exactly what :func:`dequantize_int8` returns, and
    ``size_ratio`` = (int8 values + float32 scales) / original bytes.
    """
    _check_modules(modules)
    dev = resolve_device(device)
    quantized: dict[str, QuantizedModule] = {}
    stats = CompressStats("quantize_int8", {"scheme": INT8_FORMAT}, _nbytes(modules), 0)
    for path in sorted(modules):
        f = modules[path]
        qm = QuantizedModule(_quantize_rows(f.A), _quantize_rows(f.B), f.scale)
        quantized[path] = qm
        target, error = _delta_error(f, _dequantize_module(qm), dev)
        stats.modules[path] = ModuleError(f.rank, target, error)
        stats.bytes_after += sum(
            t.numel() * t.element_size()
            for t in (qm.A.qweight, qm.A.scales, qm.B.qweight, qm.B.scales)
        )
    return quantized, stats


def _dequantize_module(qm: QuantizedModule) -> LoraFactors:
    return LoraFactors(qm.A.dequantize(), qm.B.dequantize(), qm.scale)


def dequantize_int8(quantized: Mapping[str, QuantizedModule]) -> dict[str, LoraFactors]:
    """The float32 factors an int8 adapter stands for (what the reported error refers to)."""
    return {path: _dequantize_module(qm) for path, qm in quantized.items()}


def int8_state_dict(
    quantized: Mapping[str, QuantizedModule],
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and safetensors metadata of an int8 adapter (names in the module docstring)."""
    if not quantized:
        raise JobInputError("no modules to write: the adapter would be empty")
    tensors: dict[str, Tensor] = {}
    for path in sorted(quantized):
        qm = quantized[path]
        for name, factor in (("A", qm.A), ("B", qm.B)):
            key = f"{_PREFIX}{path}.lora_{name}"
            tensors[f"{key}.qweight"] = factor.qweight.cpu().contiguous()
            tensors[f"{key}.scales"] = factor.scales.cpu().contiguous()
    return tensors, {"format": INT8_FORMAT}


def read_int8_state_dict(
    tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None, config: Mapping[str, Any]
) -> dict[str, QuantizedModule]:
    """Parse tensors written by :func:`int8_state_dict` plus the adapter config.

    LoRA scales come from the config (``r``, ``lora_alpha``, patterns, rsLoRA).
    """
    if (metadata or {}).get("format") != INT8_FORMAT:
        raise JobInputError(
            f"not an int8 LoRA file: safetensors metadata 'format' must be {INT8_FORMAT!r}"
        )
    values: dict[str, Tensor] = {}
    scales: dict[str, Tensor] = {}
    for key, tensor in tensors.items():
        stem, _, kind = key.rpartition(".")
        if kind == "qweight" and tensor.dtype == torch.int8:
            values[f"{stem}.weight"] = tensor
        elif kind == "scales" and tensor.dtype == torch.float32 and tensor.ndim == 1:
            scales[f"{stem}.weight"] = tensor
        else:
            raise JobInputError(
                f"unexpected tensor {key!r} ({tensor.dtype}) in an int8 LoRA file: expected "
                f"'<module>.lora_A|B.qweight' (int8) and '.scales' (1-D float32)"
            )
    if set(values) != set(scales):
        odd = sorted(set(values) ^ set(scales))[:3]
        raise JobInputError(f"int8 file has qweight without scales or the reverse: {odd}")
    # The PEFT parser checks key names, ranks against the config and computes the scales.
    parsed = split_peft_state_dict({k: q.to(torch.float32) for k, q in values.items()}, config)
    halves: dict[str, dict[str, QuantizedFactor]] = {}
    for key, q in values.items():
        path, name = parse_lora_key(key) or ("", "")
        s = scales[key]
        if s.shape[0] != q.shape[0]:
            raise JobInputError(f"{key}: {s.shape[0]} scales for {q.shape[0]} rows")
        halves.setdefault(path, {})[name] = QuantizedFactor(q, s)
    return {
        path: QuantizedModule(halves[path]["A"], halves[path]["B"], f.scale)
        for path, f in parsed.items()
    }
