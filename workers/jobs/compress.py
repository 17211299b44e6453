"""Compress job: one adapter -> a smaller one (lower rank, fp16/bf16, or int8).

Params (validated at submission, :class:`registry.job_params.CompressParams`):

* ``rank`` or ``energy``: truncated SVD of every module's delta
  (:func:`workers.ops.compress.reduce_rank`); the error² is the sum of the
  dropped σ²;
* ``precision``: ``fp16`` / ``bf16`` (:func:`~workers.ops.compress.cast_precision`)
  or ``int8`` (:func:`~workers.ops.compress.quantize_int8`, stored in the
  ``loreg-lora-int8-rowwise`` format that the registry validates and the SDK
  dequantizes on load).

With both, the rank is reduced first. The card reports each step's statistics
and the overall relative error of the result against the input's deltas.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from loreg.vocabulary import Precision
from workers.errors import JobInputError
from workers.jobs.common import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    load_adapter,
    parameter_count,
    write_card,
)
from workers.ops.compress import (
    INT8_FORMAT,
    CompressStats,
    QuantizedModule,
    cast_precision,
    dequantize_int8,
    int8_state_dict,
    quantize_int8,
    reduce_rank,
)
from workers.ops.lora import (
    LoraFactors,
    build_peft_state_dict,
    peft_adapter_config,
)
from workers.runner import JobContext, JobOutput

Adapter = dict[str, LoraFactors]


def relative_delta_error(before: Adapter, after: Adapter) -> float:
    """``sqrt(Σ ‖ΔW' - ΔW‖² / Σ ‖ΔW‖²)`` over modules, from the factors (float64 Gram).

    Never forms a dense delta: ``‖U V‖² = Σ (UᵀU) ∘ (V Vᵀ)``.
    """
    target = error = 0.0
    f64 = torch.float64
    for path, old in before.items():
        new = after[path]
        u_old, v_old = old.B.to(dtype=f64) * old.scale, old.A.to(dtype=f64)
        u = torch.cat([new.B.to(dtype=f64) * new.scale, -u_old], 1)
        v = torch.cat([new.A.to(dtype=f64), v_old], 0)
        target += float(((u_old.T @ u_old) * (v_old @ v_old.T)).sum())
        error += float(((u.T @ u) * (v @ v.T)).sum())
    return 0.0 if target <= 0 else math.sqrt(max(error, 0.0) / target)


def _method_name(params: dict[str, Any]) -> str:
    parts = [key for key in ("rank", "energy") if params.get(key) is not None]
    if params.get("precision"):
        parts.append(str(params["precision"]))
    return "+".join(parts)


def _write_config(folder: Path, modules: Adapter, base_model: str | None) -> None:
    config = peft_adapter_config(modules, base_model_name_or_path=base_model)
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))


def _write_float(folder: Path, modules: Adapter, base_model: str | None) -> None:
    """A plain PEFT adapter (weights in the factors' dtype) and its config."""
    folder.mkdir(parents=True, exist_ok=True)
    state, _ = build_peft_state_dict(modules)
    save_file(state, str(folder / ADAPTER_WEIGHTS))
    _write_config(folder, modules, base_model)


def _write_int8(
    folder: Path, quantized: dict[str, QuantizedModule], modules: Adapter, base_model: str | None
) -> None:
    """int8 values + per-row scales with the format metadata, and the float adapter's config."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors, metadata = int8_state_dict(quantized)
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata=metadata)
    _write_config(folder, modules, base_model)


def _compress(
    jc: JobContext, modules: Adapter, params: dict[str, Any], out: Path, base_model: str | None
) -> tuple[Adapter, list[CompressStats]]:
    """Run the steps, write the result folder; returns (float factors it stands for, stats)."""
    device = jc.device()
    steps: list[CompressStats] = []
    if params.get("rank") is not None or params.get("energy") is not None:
        reduced = reduce_rank(
            modules, rank=params.get("rank"), energy=params.get("energy"), device=device
        )
        modules = reduced.modules
        steps.append(reduced.stats)
        jc.report(0.5, f"reduced rank: energy kept {reduced.stats.energy_kept:.6f}")
    precision = params.get("precision")
    if precision == Precision.INT8:
        quantized, stats = quantize_int8(modules, device=device)
        steps.append(stats)
        _write_int8(out, quantized, modules, base_model)
        jc.report(0.7, f"quantized to int8: size ratio {stats.size_ratio:.3f}")
        return dequantize_int8(quantized), steps
    if precision is not None:
        cast = cast_precision(modules, precision, device=device)
        modules = cast.modules
        steps.append(cast.stats)
        jc.report(0.7, f"cast to {precision}: relative error {cast.stats.relative_error:.3g}")
    _write_float(out, modules, base_model)
    return modules, steps


def run(jc: JobContext) -> JobOutput:
    """Load the input adapter, compress it, write the result with its card."""
    params = {k: v for k, v in jc.params.items() if v is not None}
    inputs = jc.job.inputs or []
    if len(inputs) != 1:
        raise JobInputError(f"a compress job takes exactly one input, got {len(inputs)}")
    item = inputs[0]
    original, _ = load_adapter(jc.fetch_version(item["version_id"]))
    jc.report(0.2, f"loaded {item['ref']}")
    base_model = item.get("base_model")
    out = jc.workdir / "out"
    result, steps = _compress(jc, original, params, out, base_model)
    if not steps:
        raise JobInputError("a compress job needs params.rank, params.energy or params.precision")
    method = _method_name(params)
    error = steps[0].relative_error if len(steps) == 1 else relative_delta_error(original, result)
    card = {
        "title": f"{jc.job.output}: {method} compression of {item['ref']}",
        "type": "compress",
        "method": method,
        "params": params,
        "parent": {"ref": item["ref"], "digest": item.get("digest")},
        "parents": [{"ref": item["ref"]}],
        "relative_error": error,
        "energy_kept": 1.0 - error**2,
        "rank": max(f.rank for f in result.values()),
        "parameter_count": parameter_count(result),
        "parameter_count_before": parameter_count(original),
        "tensor_bytes": steps[-1].bytes_after,
        "tensor_bytes_before": steps[0].bytes_before,
        "size_ratio": steps[-1].bytes_after / steps[0].bytes_before,
        "size_bytes": sum(
            (out / name).stat().st_size for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG)
        ),
        "storage": INT8_FORMAT if params.get("precision") == Precision.INT8 else "peft",
        "steps": [stats.to_dict() for stats in steps],
    }
    write_card(out, card)
    lineage = [
        {
            "relation": "compressed_from",
            "parent_version_id": item["version_id"],
            "params": {"method": method, **params},
        }
    ]
    return JobOutput(
        folder=out, lineage=lineage, card=card, base_model=base_model, description=card["title"]
    )
