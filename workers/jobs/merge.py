"""Merge job: fold one adapter into its base model; the result is a new base model.

``W ← W + s·B·A`` for every adapter module (:func:`workers.ops.merge.merge_into_base`),
streamed shard by shard: one shard's tensors are read, merged and written before
the next is read. Other files of the base folder (``config.json``,
``generation_config.json``, tokenizer files, the shard index) are copied
unchanged; the README is replaced by the result card. Int8 adapters are
dequantized first. Lineage: ``merged_into`` from the adapter version and from
the base model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from workers.errors import JobInputError
from workers.jobs.common import folder_size, load_adapter, parameter_count, write_card
from workers.ops.lora import LoraFactors
from workers.ops.merge import MergeReport, merge_into_base
from workers.runner import JobContext, JobOutput

INDEX_FILE = "model.safetensors.index.json"
CARD_FILE = "README.md"


def shard_names(folder: Path) -> list[str]:
    """The base model's weight shards: the index's files, else every top-level safetensors."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map") or {}
        names = sorted(set(weight_map.values()))
    else:
        names = sorted(p.name for p in folder.glob("*.safetensors"))
    if not names:
        raise JobInputError("the base model has no .safetensors weights to merge into")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise JobInputError(f"the base model's index names missing shards: {missing}")
    return names


def shard_metadata(path: Path) -> dict[str, str]:
    """A shard's safetensors metadata (``format: pt`` when it has none)."""
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {"format": "pt"}


def tensor_keys(folder: Path, names: list[str]) -> list[str]:
    """Every tensor name across the shards (headers only)."""
    keys: list[str] = []
    for name in names:
        with safe_open(str(folder / name), framework="pt") as handle:
            keys.extend(handle.keys())
    return keys


def _read_shards(folder: Path, names: list[str]) -> Iterator[tuple[str, dict[str, Tensor]]]:
    for name in names:
        yield name, load_file(str(folder / name))


def merge_folder(
    jc: JobContext, base: Path, modules: dict[str, LoraFactors], out: Path
) -> tuple[MergeReport, list[str]]:
    """Write merged shards and copied side files to ``out``; returns (report, shards)."""
    names = shard_names(base)
    out.mkdir(parents=True, exist_ok=True)
    report = MergeReport()
    merged = merge_into_base(
        _read_shards(base, names),
        modules,
        base_keys=tensor_keys(base, names),
        report=report,
        device=jc.device(),
    )
    for i, (name, tensors) in enumerate(merged):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            str(target),
            metadata=shard_metadata(base / name),
        )
        del tensors
        jc.report(0.2 + 0.7 * (i + 1) / len(names), f"merged shard {name}")
    skip = {*names, CARD_FILE}
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        if rel not in skip:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / rel)
    return report, names


def run(jc: JobContext) -> JobOutput:
    """Fetch the adapter and its base model, merge shard by shard, write the card."""
    inputs = jc.job.inputs or []
    if len(inputs) != 1 or not inputs[0].get("base_model"):
        raise JobInputError("a merge job takes exactly one adapter with a known base model")
    item = inputs[0]
    modules, _ = load_adapter(jc.fetch_version(item["version_id"]))
    base_folder, base = jc.fetch_base_model(item["base_model"])
    jc.report(0.2, f"fetched {item['ref']} and {base.name}")
    out = jc.workdir / "merged"
    report, shards = merge_folder(jc, base_folder, modules, out)
    card: dict[str, Any] = {
        "title": f"{jc.job.output}: {base.name} with {item['ref']} merged in",
        "type": "merge",
        "method": "W + scale * B @ A (fp32 sum, cast to the weight's dtype)",
        "exact": True,
        "base_model": base.name,
        "base_model_digest": base.digest,
        "adapter": item["ref"],
        "adapter_digest": item.get("digest"),
        "modules_merged": len(report.merged),
        "shards": shards,
        "adapter_parameter_count": parameter_count(modules),
        "parents": [{"ref": item["ref"]}, {"ref": base.name}],
        "note": "A full base model: load it with transformers, no PEFT needed.",
    }
    write_card(out, card)
    card["size_bytes"] = folder_size(out)
    write_card(out, card)
    merged = {"method": "merge", "modules_merged": len(report.merged)}
    lineage = [
        {
            "relation": "merged_into",
            "parent_version_id": item["version_id"],
            "params": {**merged, "role": "adapter"},
        },
        {
            "relation": "merged_into",
            "parent_base_model_id": base.id,
            "params": {**merged, "role": "base"},
        },
    ]
    return JobOutput(
        folder=out, kind="base_model", lineage=lineage, card=card, description=card["title"]
    )
