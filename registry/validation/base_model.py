"""Does an adapter fit a base model? Compare LoRA module shapes with base weights.

A base model is summarised by the shape of every 2-D ``<module>.weight`` in
its safetensors shards: ``[out, in]`` for a Linear layer, ``[num_embeddings,
dim]`` for an Embedding, ``[in, out]`` for a GPT-2 style Conv1D (PEFT's
``fan_in_fan_out``). Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable

from registry.errors import InvalidSafetensors
from registry.validation.peft_config import LoraModuleShape, LoraSummary
from registry.validation.safetensors_header import SafetensorsHeader, TensorInfo

#: Input-embedding module names a tied ``lm_head`` shares its weight with.
_INPUT_EMBEDDINGS = ("embed_tokens", "wte", "word_embeddings", "embed_in", "tok_embeddings")


def linear_modules(tensors: dict[str, TensorInfo]) -> dict[str, list[int]]:
    """Every 2-D ``<module>.weight`` tensor as ``{"<module>": [dim0, dim1]}``."""
    return {
        name[: -len(".weight")]: list(info.shape)
        for name, info in tensors.items()
        if name.endswith(".weight") and len(name) > len(".weight") and len(info.shape) == 2
    }


def linear_modules_of_headers(headers: Iterable[SafetensorsHeader]) -> dict[str, list[int]]:
    """:func:`linear_modules` over several shards, merged.

    A module found in two shards with different shapes raises
    :class:`InvalidSafetensors` (the checkpoint contradicts itself).
    """
    merged: dict[str, list[int]] = {}
    for header in headers:
        for module, shape in linear_modules(header.tensors).items():
            known = merged.setdefault(module, shape)
            if known != shape:
                raise InvalidSafetensors(
                    f"'{module}.weight' appears in two shards with shapes {known} and {shape}"
                )
    return merged


def _tied_embedding(base_modules: dict[str, list[int]]) -> list[int] | None:
    """The input-embedding shape, when exactly one input embedding is known."""
    found = [
        shape
        for module, shape in base_modules.items()
        if module.rsplit(".", 1)[-1] in _INPUT_EMBEDDINGS
    ]
    return found[0] if len(found) == 1 else None


def _expected_base_shape(shape: LoraModuleShape, fan_in_fan_out: bool) -> tuple[list[int], str]:
    """The base weight shape this LoRA module implies, and how to read it."""
    if shape.kind == "embedding":
        return [shape.in_features, shape.out_features], "num_embeddings x dim"
    if fan_in_fan_out:
        return [shape.in_features, shape.out_features], "in x out"
    return [shape.out_features, shape.in_features], "out x in"


def check_adapter_fits_base(adapter: LoraSummary, base_modules: dict[str, list[int]]) -> list[str]:
    """One human-readable message per adapter module that does not fit the base model.

    An empty list means every LoRA module exists in the base model with the
    shape the adapter's factors imply. A missing ``lm_head`` is compared with the
    input embedding (tied weights are stored once).
    """
    problems: list[str] = []
    fan_in_fan_out = getattr(adapter, "fan_in_fan_out", False)
    for module, shape in sorted(adapter.modules.items()):
        expected, layout = _expected_base_shape(shape, fan_in_fan_out)
        base = base_modules.get(module)
        if base is None and module.rsplit(".", 1)[-1] == "lm_head":
            base = _tied_embedding(base_modules)
        if base is None:
            problems.append(f"{module}: not in base model (no 2-D '{module}.weight')")
        elif list(base) != expected:
            problems.append(
                f"{module}: adapter has {expected[0]}x{expected[1]} ({layout}), "
                f"base model has {'x'.join(str(d) for d in base)}"
            )
    return problems
