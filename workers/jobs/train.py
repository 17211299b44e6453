"""Train job: a PEFT LoRA on a registered base model and a chat JSONL dataset.

Params (validated at submission, :class:`registry.job_params.TrainParams`):
``base_model``, ``dataset`` (a pinned dataset ref), ``preset`` (r/alpha),
optional ``r`` / ``lora_alpha`` overrides, ``steps`` or ``epochs``, ``lr``,
``seed``, ``max_length``, ``batch_size``, ``eval_fraction``, ``target_modules``
and ``continue_from`` (an adapter ref whose weights, rank and targets the run
starts from). The loop itself is :func:`workers.training.train_lora`.

Lineage: ``trained_from`` the dataset version (with the training parameters)
and ``continued_from`` the parent adapter; the publish service adds
``trained_from`` the registered base model to every adapter version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session

from loreg.vocabulary import PRESET_SHAPES, Preset
from registry.auth import Principal
from registry.services import catalog
from workers.errors import JobInputError
from workers.jobs.common import folder_size, is_int8, load_adapter, save_adapter, write_card
from workers.runner import JobContext, JobOutput
from workers.training import (
    ChatExample,
    TrainReport,
    TrainSettings,
    load_tokenizer,
    read_chat_jsonl,
    train_lora,
)

DEFAULTS = {"lr": 2e-4, "seed": 0, "max_length": 1024, "batch_size": 4, "eval_fraction": 0.1}
CURVE_POINTS = 200


def settings_from_params(params: dict[str, Any]) -> TrainSettings:
    """Training settings from job params (preset r/alpha unless ``r``/``lora_alpha`` given)."""
    # a saved preset's r and lora_alpha were copied into params at submission
    shape = PRESET_SHAPES.get(params.get("preset", Preset.SMALL))
    preset_r, preset_alpha = shape or PRESET_SHAPES[Preset.SMALL]
    return TrainSettings(
        r=int(params.get("r") or preset_r),
        lora_alpha=float(params.get("lora_alpha") or preset_alpha),
        target_modules=params.get("target_modules"),
        steps=params.get("steps"),
        epochs=params.get("epochs"),
        **{k: default if params.get(k) is None else params[k] for k, default in DEFAULTS.items()},
    )


def resolve_version(jc: JobContext, ref: str, kind: str) -> int:
    """The version id of a (submission-pinned) ref, read as the job."""
    with Session(jc.ctx.engine) as session:
        _, adapter, version = catalog.resolve_ref(session, Principal.for_job(jc.job), ref)
    if adapter.kind != kind:
        raise JobInputError(f"{ref} is a {adapter.kind}, not a {kind}")
    return int(version.id)


def plain_adapter(folder: Path, workdir: Path) -> Path:
    """A folder PEFT can load: an int8 adapter is dequantized to fp32 first."""
    if not is_int8(folder):
        return folder
    modules, _ = load_adapter(folder)
    return save_adapter(workdir / "parent-fp32", modules, base_model=None, card={})


def load_base(folder: Path):
    """The base model as a transformers causal LM in fp32, from local files only."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as exc:
        raise JobInputError(f"the base model does not load as a causal LM: {exc}") from exc


def _curve(losses: list[float]) -> list[list[float]]:
    stride = max(1, -(-len(losses) // CURVE_POINTS))
    return [[step, round(losses[step - 1], 6)] for step in range(1, len(losses) + 1, stride)]


def build_card(
    jc: JobContext,
    settings: TrainSettings,
    report: TrainReport,
    examples: list[ChatExample],
    parent_ref: str | None,
) -> dict[str, Any]:
    """The result card: settings, metrics, data and the caveats of this run."""
    params = jc.params
    notes = [f"Tokenizer: {report.tokenizer}.", f"Loss on {report.loss_on}."]
    if report.eval_split == "train":
        notes.append(
            "The dataset is too small for a held-out split (or eval_fraction is 0): "
            "eval_loss and perplexity are measured on the training set."
        )
    if parent_ref:
        notes.append(f"Continued from {parent_ref}: rank, alpha and targets are the parent's.")
    parents = [{"ref": params["dataset"]}] + ([{"ref": parent_ref}] if parent_ref else [])
    return {
        "title": f"{jc.job.output}: LoRA trained on {params['dataset']}",
        "type": "train",
        "method": "lora",
        "base_model": params["base_model"],
        "dataset": params["dataset"],
        "dataset_records": len(examples),
        "continued_from": parent_ref,
        "preset": None if parent_ref else params.get("preset", Preset.SMALL.value),
        "r": report.r,
        "lora_alpha": report.lora_alpha,
        "target_modules": report.target_modules,
        "steps": report.steps,
        "epochs": round(report.epochs, 4),
        "lr": settings.lr,
        "seed": settings.seed,
        "max_length": settings.max_length,
        "batch_size": settings.batch_size,
        "eval_fraction": settings.eval_fraction,
        "train_loss_first": report.train_losses[0],
        "train_loss_last": report.train_losses[-1],
        "train_loss_curve": _curve(report.train_losses),
        "eval_loss_before": report.eval_loss_before,
        "eval_loss": report.eval_loss,
        "perplexity": report.perplexity,
        "eval_split": report.eval_split,
        "train_examples": report.train_examples,
        "eval_examples": report.eval_examples,
        "dropped_examples": report.dropped_examples,
        "parameter_count": report.parameter_count,
        "precision": report.precision,
        "tokenizer": report.tokenizer,
        "loss_on": report.loss_on,
        "prompt_format": report.prompt_format,
        "parents": parents,
        "note": " ".join(notes),
    }


def run(jc: JobContext) -> JobOutput:
    """Fetch base model, dataset (and parent), train, write the adapter with its card."""
    params = jc.params
    base_name = params["base_model"]
    dataset_id = resolve_version(jc, params["dataset"], "dataset")
    parent_ref = params.get("continue_from")
    parent_id = resolve_version(jc, parent_ref, "adapter") if parent_ref else None
    base_folder, _ = jc.fetch_base_model(base_name)
    data_folder = jc.fetch_version(dataset_id)
    init = plain_adapter(jc.fetch_version(parent_id), jc.workdir) if parent_id else None
    examples = read_chat_jsonl(sorted(data_folder.rglob("*.jsonl")))
    jc.report(0.05, f"fetched {base_name} and {len(examples)} conversations")

    model = load_base(base_folder)
    tokenizer = load_tokenizer(base_folder, int(model.config.vocab_size))
    settings = settings_from_params(params)

    def on_step(step: int, total: int, loss: float) -> None:
        jc.report(0.1 + 0.8 * step / total, f"step {step}/{total} train_loss {loss:.4f}")

    peft_model, report = train_lora(
        model, examples, tokenizer, settings, init_adapter=init, device=jc.device(), on_step=on_step
    )
    jc.log(f"eval_loss {report.eval_loss:.4f} ({report.eval_split}), ppl {report.perplexity:.2f}")

    out = jc.workdir / "out"
    peft_model.peft_config[peft_model.active_adapter].base_model_name_or_path = base_name
    peft_model.save_pretrained(str(out), save_embedding_layers=False)
    card = build_card(jc, settings, report, examples, parent_ref)
    write_card(out, card)
    card["size_bytes"] = folder_size(out)
    write_card(out, card)

    train_params = {
        k: card[k] for k in ("preset", "r", "lora_alpha", "steps", "lr", "seed", "max_length")
    }
    lineage = [
        {"relation": "trained_from", "parent_version_id": dataset_id, "params": train_params}
    ]
    if parent_id is not None:
        lineage.append({"relation": "continued_from", "parent_version_id": parent_id, "params": {}})
    return JobOutput(
        folder=out,
        kind="adapter",
        lineage=lineage,
        card=card,
        base_model=base_name,
        description=card["title"],
    )
