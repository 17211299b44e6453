"""Adapter folders in and out of handlers, and result cards."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from loreg.constants import INT8_FORMAT
from registry.modelcard import Card, hub_metadata, render_card
from workers.ops.compress import dequantize_int8, read_int8_state_dict
from workers.ops.lora import LoraFactors, build_peft_state_dict, split_peft_state_dict

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def weights_metadata(folder: Path) -> dict[str, str]:
    """The safetensors metadata of the adapter's weights file (header only)."""
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as handle:
        return handle.metadata() or {}


def is_int8(folder: Path) -> bool:
    """True when the adapter is stored in the int8 row-wise format of the compress job."""
    return weights_metadata(folder).get("format") == INT8_FORMAT


def load_adapter(folder: Path) -> tuple[dict[str, LoraFactors], dict[str, Any]]:
    """Read a PEFT adapter folder into ``{module_path: LoraFactors}`` and its config.

    An int8 adapter is dequantized to float32.
    """
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    state = load_file(str(folder / ADAPTER_WEIGHTS))
    metadata = weights_metadata(folder)
    if metadata.get("format") == INT8_FORMAT:
        return dequantize_int8(read_int8_state_dict(state, metadata, config)), config
    return split_peft_state_dict(state, config), config


def adapter_dtype(folder: Path) -> torch.dtype:
    """The float dtype the adapter's LoRA factors are in (float32 for an int8 adapter)."""
    if is_int8(folder):
        return torch.float32
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as handle:
        first = next(iter(handle.keys()))
        return handle.get_tensor(first).dtype


def factors_dtype(adapters: Iterable[dict[str, LoraFactors]]) -> torch.dtype | None:
    """The promoted dtype of every factor of every adapter (None when there are none)."""
    dtype: torch.dtype | None = None
    for modules in adapters:
        for f in modules.values():
            for t in (f.A, f.B):
                dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    return dtype


def save_adapter(
    folder: Path,
    modules: dict[str, LoraFactors],
    *,
    base_model: str | None,
    card: dict[str, Any],
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a PEFT-loadable adapter folder (weights, config, README card)."""
    folder.mkdir(parents=True, exist_ok=True)
    state, config = build_peft_state_dict(modules, dtype=dtype, base_model_name_or_path=base_model)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    write_card(folder, card)
    return folder


def parameter_count(modules: dict[str, LoraFactors]) -> int:
    """Σ (d + k) · r over modules."""
    return sum(f.A.numel() + f.B.numel() for f in modules.values())


def write_card(folder: Path, card: dict[str, Any]) -> None:
    """A README.md model card: Hub-style YAML metadata, a readable summary, the card as JSON.

    The metadata (registry.modelcard) names the base model, ``library_name`` (``peft``
    for an adapter folder, ``transformers`` for a merged model), tags and the loreg
    lineage, so the result looks right once exported to the Hub.
    """
    lines = [f"# {card.get('title', 'loreg result')}", ""]
    for key in (
        "type",
        "method",
        "exact",
        "parameter_count",
        "size_bytes",
        "energy_kept",
        "relative_error",
        "size_ratio",
    ):
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    for parent in card.get("parents", []):
        weight = f" (weight {parent['weight']})" if "weight" in parent else ""
        lines.append(f"- parent: `{parent['ref']}`{weight}")
    if card.get("note"):
        lines += ["", card["note"]]
    lines += ["", "```json", json.dumps(card, indent=2, sort_keys=True, default=str), "```", ""]
    body = "\n".join(lines)
    (folder / "README.md").write_text(render_card(Card(card_metadata(folder, card), body)))


def card_metadata(folder: Path, card: dict[str, Any]) -> dict[str, Any]:
    """The Hub metadata of a result card: base model, library, tags, loreg lineage."""
    config_path = folder / ADAPTER_CONFIG
    is_adapter = config_path.is_file()
    base_model = card.get("base_model")
    if is_adapter and not base_model:
        base_model = json.loads(config_path.read_text()).get("base_model_name_or_path")
    tags = [str(card[k]) for k in ("type", "method") if isinstance(card.get(k), str)]
    lineage: dict[str, Any] = {}
    if isinstance(card.get("type"), str):
        lineage["job"] = card["type"]
    parents = [
        {k: p[k] for k in ("ref", "weight") if k in p}
        for p in card.get("parents", [])
        if isinstance(p, dict) and "ref" in p
    ]
    if parents:
        lineage["parents"] = parents
    metadata = hub_metadata(
        base_model=base_model if isinstance(base_model, str) else None,
        tags=tags if is_adapter else ["merge", *tags],
        loreg=lineage,
    )
    if not is_adapter:
        metadata["library_name"] = "transformers"
    return metadata


def folder_size(folder: Path) -> int:
    """Total bytes of the files in a folder except the card (``README.md``).

    The card states this figure, so its own size (which depends on the figure's
    digits) is left out: the number stays true once the card is written.
    """
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() != "README.md"
    )
