"""Fold a LoRA adapter into its base model's weights, shard by shard (docs/design.md §7).

``W ← W + scale · B @ A`` for every adapter module, where the base weight of
module ``<path>`` is the tensor ``<path>.weight`` (Hugging Face naming, e.g.
``model.layers.0.self_attn.q_proj.weight``). Only one shard is held at a time;
the sum is computed in float32 and cast back to the weight's dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from workers.errors import JobInputError
from workers.ops.lora import LoraFactors, resolve_device

__all__ = ["MergeReport", "merge_into_base"]


@dataclass
class MergeReport:
    """Filled while :func:`merge_into_base` runs: which module went into which shard."""

    merged: dict[str, str] = field(default_factory=dict)  # module path -> shard name
    shards: list[str] = field(default_factory=list)  # every shard seen, in order


def _weight_key(path: str) -> str:
    return f"{path}.weight"


def merge_into_base(
    base_shards: Iterable[tuple[str, Mapping[str, Tensor]]],
    modules: Mapping[str, LoraFactors],
    *,
    base_keys: Iterable[str] | None = None,
    report: MergeReport | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[str, dict[str, Tensor]]]:
    """Yield ``(shard_name, tensors)`` with every adapter module folded into its weight.

    Tensors that no module targets pass through unchanged. Raises
    :class:`~workers.errors.JobInputError` when a weight's shape is not
    ``(d, k)`` of its module, when a module's weight appears twice, or — after
    the last shard — when some module was not found in any shard. Pass
    ``base_keys`` (e.g. the keys of ``model.safetensors.index.json``'s
    ``weight_map``) to check for missing modules before the first shard is
    yielded. ``report`` (a :class:`MergeReport`) records what was merged where.
    ``device`` is where the products are computed (default: CUDA when available);
    the tensors come back on their own device.
    """
    if not modules:
        raise JobInputError("the adapter has no modules to merge")
    wanted = {_weight_key(path): path for path in modules}
    if base_keys is not None:
        missing = sorted(set(wanted) - set(base_keys))
        if missing:
            raise JobInputError(
                f"{len(missing)} adapter module(s) have no weight in the base model, e.g. "
                f"{missing[:3]}; is this adapter for this base model?"
            )
    return _merge(base_shards, modules, wanted, report or MergeReport(), resolve_device(device))


def _merge(
    base_shards: Iterable[tuple[str, Mapping[str, Tensor]]],
    modules: Mapping[str, LoraFactors],
    wanted: dict[str, str],
    report: MergeReport,
    device: torch.device,
) -> Iterator[tuple[str, dict[str, Tensor]]]:
    for shard_name, tensors in base_shards:
        report.shards.append(shard_name)
        out = dict(tensors)
        for key in sorted(set(out) & set(wanted)):
            path = wanted[key]
            if path in report.merged:
                raise JobInputError(
                    f"weight {key!r} appears in shard {shard_name!r} and in "
                    f"{report.merged[path]!r}; the base checkpoint is inconsistent"
                )
            out[key] = _fold(key, out[key], modules[path], device)
            report.merged[path] = shard_name
        yield shard_name, out
    missing = sorted(set(modules) - set(report.merged))
    if missing:
        raise JobInputError(
            f"{len(missing)} adapter module(s) were not found in any base shard, e.g. "
            f"{missing[:3]}; is this adapter for this base model?"
        )


def _fold(key: str, weight: Tensor, factors: LoraFactors, device: torch.device) -> Tensor:
    """``weight + scale · B @ A`` computed in float32, returned in the weight's dtype/device."""
    if not weight.is_floating_point():
        raise JobInputError(f"base weight {key!r} is {weight.dtype}; only float weights can merge")
    if tuple(weight.shape) != factors.shape:
        raise JobInputError(
            f"base weight {key!r} has shape {tuple(weight.shape)} but the adapter's delta is "
            f"{factors.shape} (out, in); is this adapter for this base model?"
        )
    f32 = torch.float32
    delta = factors.B.to(device, f32) @ factors.A.to(device, f32)
    merged = torch.add(weight.to(device, f32), delta, alpha=factors.scale)  # never in place
    return merged.to(device=weight.device, dtype=weight.dtype)
