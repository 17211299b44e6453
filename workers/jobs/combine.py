"""Combine job: several adapters -> one, by a method of workers.ops.combine."""

from __future__ import annotations

from loreg.vocabulary import SEEDED_METHODS, CombineMethod, MajoritySign
from workers.jobs.common import (
    factors_dtype,
    folder_size,
    load_adapter,
    parameter_count,
    save_adapter,
)
from workers.ops.combine import ModuleCallback, combine
from workers.runner import JobContext, JobOutput

LOADED, COMBINED = 0.4, 0.8  # progress after loading the inputs, after combining

INEXACT_NOTE = (
    "fedit averages A and B separately: the result is NOT the average of the "
    "clients' deltas (it adds cross terms B_i A_j); use flora or delta_avg for exact results."
)


def module_reporter(jc: JobContext) -> ModuleCallback:
    """An ``on_module`` callback: progress from LOADED to COMBINED, a message every ~10%.

    ``jc.report`` raises JobCancelled once cancellation was requested, which
    aborts the combination between two modules.
    """

    def on_module(index: int, total: int) -> None:
        done = index + 1
        step = max(1, total // 10)
        message = f"combined {done}/{total} modules" if done % step == 0 or done == total else None
        jc.report(LOADED + (COMBINED - LOADED) * done / total, message)

    return on_module


def run(jc: JobContext) -> JobOutput:
    """Load every input, combine, write the result adapter with its card.

    The result is stored in the promoted dtype of all inputs (fp16 + fp32 -> fp32).
    """
    params = dict(jc.params)
    method = params.get("method", CombineMethod.LINEAR.value)
    inputs = jc.job.inputs or []
    adapters = []
    for i, item in enumerate(inputs):
        folder = jc.fetch_version(item["version_id"])
        modules, _ = load_adapter(folder)
        adapters.append(modules)
        jc.report(0.05 + (LOADED - 0.05) * (i + 1) / len(inputs), f"loaded {item['ref']}")
    dtype = factors_dtype(adapters)
    weights = [float(item["weight"]) for item in inputs]
    # a seed is accepted with every method (CI can pass one everywhere); only DARE draws
    seed = params.get("seed") if method in SEEDED_METHODS else None
    result = combine(
        adapters,
        weights,
        method,
        rank=params.get("rank"),
        density=params.get("density"),
        seed=seed,
        majority_sign_method=params.get("majority_sign_method", MajoritySign.TOTAL.value),
        device=jc.device(),
        on_module=module_reporter(jc),
    )
    jc.report(COMBINED, f"combined {len(inputs)} adapters with {method}")
    stats = result.stats.to_dict()
    card = {
        "title": f"{jc.job.output}: {method} of {len(inputs)} adapters",
        "type": "combine",
        "method": method,
        "params": params,
        "parents": [{"ref": item["ref"], "weight": item["weight"]} for item in inputs],
        "exact": stats.get("exact"),
        "energy_kept": stats.get("energy_kept"),
        "stats": stats,
        "parameter_count": parameter_count(result.modules),
    }
    if method == CombineMethod.FEDIT:
        card["note"] = INEXACT_NOTE
    base_model = inputs[0].get("base_model") if inputs else None
    out = save_adapter(
        jc.workdir / "out", result.modules, base_model=base_model, card=card, dtype=dtype
    )
    card["size_bytes"] = folder_size(out)
    save_adapter(out, result.modules, base_model=base_model, card=card, dtype=dtype)
    lineage = [
        {
            "relation": "combined_from",
            "parent_version_id": item["version_id"],
            "params": {
                "weight": item["weight"],
                "method": method,
                **{k: v for k, v in params.items() if k != "method"},
            },
        }
        for item in inputs
    ]
    return JobOutput(
        folder=out, lineage=lineage, card=card, base_model=base_model, description=card["title"]
    )
