"""PEFT LoRA training on a chat JSONL dataset, independent of the job machinery.

:func:`train_lora` takes a causal LM (already loaded), parsed conversations and a
tokenizer, and returns the trained PEFT model with a :class:`TrainReport`
(train loss per step, eval loss and perplexity). The train job
(:mod:`workers.jobs.train`) fetches inputs and publishes; tests call this directly.

Formatting (:func:`encode_example`): ``{system}\\n\\n`` then, per turn,
``Human: {human}\\nAssistant: `` followed by ``{assistant}`` and the tokenizer's
EOS token (``\\n`` when it has none). The loss covers the assistant answers
(and their EOS) only; prompt tokens are labelled ``-100``.

Precision: bf16 autocast on CUDA (fp32 master weights), fp32 on CPU. The run is
seeded: LoRA initialisation, data split and batch order all follow ``seed``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from workers.errors import JobInputError

__all__ = [
    "ATTENTION_PROJECTIONS",
    "ByteTokenizer",
    "ChatExample",
    "EncodedExample",
    "HFTokenizer",
    "TrainReport",
    "TrainSettings",
    "default_target_modules",
    "encode_example",
    "evaluate_loss",
    "load_tokenizer",
    "parse_chat_record",
    "read_chat_jsonl",
    "split_examples",
    "train_lora",
]

#: Leaf names of attention projections, tried in this order for the default targets.
ATTENTION_PROJECTIONS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "qkv_proj",
    "query_key_value",
    "Wqkv",
    "query",
    "key",
    "value",
    "out_proj",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
IGNORE = -100
LOSS_ON = "assistant tokens only (system and human turns are masked)"
PROMPT_FORMAT = "{system}\\n\\n + per turn 'Human: {human}\\nAssistant: ' + '{assistant}<eos>'"


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ChatExample:
    """One conversation: an optional system prompt and (human, assistant) turns."""

    system: str | None
    turns: tuple[tuple[str, str], ...]


def parse_chat_record(record: Any, where: str) -> ChatExample:
    """A :class:`ChatExample` from one JSONL record, or JobInputError naming ``where``."""
    if not isinstance(record, dict):
        raise JobInputError(f"{where}: each line must be a JSON object")
    system = record.get("system")
    turns = record.get("conversation")
    if system is not None and not isinstance(system, str):
        raise JobInputError(f"{where}: 'system' must be a string")
    if not isinstance(turns, list) or not turns:
        raise JobInputError(f"{where}: 'conversation' must be a non-empty list of turns")
    parsed = []
    for i, turn in enumerate(turns):
        if not (
            isinstance(turn, dict)
            and isinstance(turn.get("human"), str)
            and isinstance(turn.get("assistant"), str)
        ):
            raise JobInputError(
                f"{where}: conversation[{i}] needs string fields 'human' and 'assistant'"
            )
        parsed.append((turn["human"], turn["assistant"]))
    return ChatExample(system or None, tuple(parsed))


def read_chat_jsonl(paths: Iterable[Path]) -> list[ChatExample]:
    """Every record of the given chat JSONL files, in file then line order."""
    examples = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path.name} line {number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise JobInputError(f"{where}: not valid JSON ({exc})") from None
                examples.append(parse_chat_record(record, where))
    if not examples:
        raise JobInputError("the dataset holds no records: push a non-empty chat JSONL")
    return examples


# ------------------------------------------------------------------------ tokenizers


class Tokenizer(Protocol):
    """What training needs from a tokenizer."""

    description: str
    bos_id: int | None
    eos_id: int | None
    pad_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        ...


class ByteTokenizer:
    """Fallback for models without tokenizer files: UTF-8 bytes, ids modulo ``vocab_size``."""

    description = "byte-level fallback: UTF-8 bytes mapped to ids mod vocab_size"
    bos_id = None
    eos_id = None
    pad_id = 0

    def __init__(self, vocab_size: int):
        if vocab_size < 1:
            raise JobInputError(f"vocab_size must be positive, got {vocab_size}")
        self.vocab_size = int(vocab_size)

    def encode(self, text: str) -> list[int]:
        """One id per UTF-8 byte (``byte % vocab_size``)."""
        return [b % self.vocab_size for b in text.encode("utf-8")]


class HFTokenizer:
    """A Hugging Face tokenizer loaded from the base model's folder."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer
        self.description = f"base model tokenizer ({type(tokenizer).__name__})"
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.eos_id or 0))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self._tok(text, add_special_tokens=False)["input_ids"])


def load_tokenizer(folder: Path, vocab_size: int) -> Tokenizer:
    """The folder's tokenizer if it has tokenizer files, else :class:`ByteTokenizer`."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return ByteTokenizer(vocab_size)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure means the same to the user
        raise JobInputError(
            f"the base model has tokenizer files but they do not load ({exc}); "
            "register the base model with a complete tokenizer, or without tokenizer files "
            "to train on UTF-8 bytes"
        ) from exc
    return HFTokenizer(tokenizer)


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class EncodedExample:
    """Token ids and labels (``-100`` where no loss is taken) of one conversation."""

    input_ids: list[int]
    labels: list[int]

    @property
    def target_tokens(self) -> int:
        """How many tokens the loss covers (a label at position 0 is never predicted)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


def encode_example(
    example: ChatExample, tokenizer: Tokenizer, max_length: int
) -> EncodedExample | None:
    """Encode one conversation (see the module docstring); None if no answer token fits."""
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str | list[int], trained: bool) -> None:
        tokens = tokenizer.encode(text) if isinstance(text, str) else text
        ids.extend(tokens)
        labels.extend(tokens if trained else [IGNORE] * len(tokens))

    if tokenizer.bos_id is not None:
        add([tokenizer.bos_id], False)
    if example.system:
        add(f"{example.system}\n\n", False)
    for human, assistant in example.turns:
        add(f"Human: {human}\nAssistant: ", False)
        add(assistant, True)
        add([tokenizer.eos_id] if tokenizer.eos_id is not None else "\n", True)
    encoded = EncodedExample(ids[:max_length], labels[:max_length])
    return encoded if encoded.target_tokens > 0 else None


def split_examples(
    examples: Sequence[EncodedExample], eval_fraction: float, seed: int
) -> tuple[list[EncodedExample], list[EncodedExample], str]:
    """(train, eval, split) with a seeded shuffle; eval is the train set when too small.

    ``split`` is ``"held-out"`` or ``"train"`` (fewer than 2 examples, or a
    fraction that rounds to no eval example).
    """
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = math.floor(len(examples) * eval_fraction)
    if n_eval < 1 or len(examples) - n_eval < 1:
        return list(examples), list(examples), "train"
    shuffled = [examples[i] for i in order]
    return shuffled[n_eval:], shuffled[:n_eval], "held-out"


def _collate(
    batch: Sequence[EncodedExample], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def _batches(
    examples: Sequence[EncodedExample], batch_size: int, generator: torch.Generator
) -> Iterator[list[EncodedExample]]:
    """Endless shuffled batches: a new permutation every epoch."""
    while True:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            yield [examples[i] for i in order[start : start + batch_size]]


# --------------------------------------------------------------------------- training


@dataclass
class TrainSettings:
    """Hyper-parameters of one run. ``steps`` wins over ``epochs``; neither means 1 epoch."""

    r: int = 4
    lora_alpha: float = 8.0
    target_modules: list[str] | None = None
    steps: int | None = None
    epochs: int | None = None
    lr: float = 2e-4
    seed: int = 0
    max_length: int = 1024
    batch_size: int = 4
    eval_fraction: float = 0.1
    max_grad_norm: float = 1.0


@dataclass
class TrainReport:
    """What a run did: losses, eval metrics and the LoRA it trained."""

    train_losses: list[float]
    eval_loss_before: float
    eval_loss: float
    perplexity: float
    eval_split: str
    train_examples: int
    eval_examples: int
    dropped_examples: int
    steps: int
    epochs: float
    r: int
    lora_alpha: float
    target_modules: list[str]
    parameter_count: int
    precision: str
    tokenizer: str
    loss_on: str = LOSS_ON
    prompt_format: str = PROMPT_FORMAT


def default_target_modules(model: nn.Module) -> list[str]:
    """The attention projections (:data:`ATTENTION_PROJECTIONS`) that are Linear layers."""
    present = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }
    found = [name for name in ATTENTION_PROJECTIONS if name in present]
    if not found:
        raise JobInputError(
            "no attention projection (q_proj, k_proj, v_proj, o_proj, ...) found among the "
            "model's Linear layers; pass params.target_modules"
        )
    return found


def _check_settings(settings: TrainSettings) -> None:
    checks = [
        (settings.r >= 1, f"r must be >= 1, got {settings.r}"),
        (settings.lora_alpha > 0, f"lora_alpha must be > 0, got {settings.lora_alpha}"),
        (settings.lr > 0, f"lr must be > 0, got {settings.lr}"),
        (settings.batch_size >= 1, f"batch_size must be >= 1, got {settings.batch_size}"),
        (settings.max_length >= 2, f"max_length must be >= 2, got {settings.max_length}"),
        (0 <= settings.eval_fraction < 1, "eval_fraction must be in [0, 1)"),
        (settings.steps is None or settings.steps >= 1, "steps must be >= 1"),
        (settings.epochs is None or settings.epochs >= 1, "epochs must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise JobInputError(message)


def _wrap(model: nn.Module, settings: TrainSettings, init_adapter: Path | None) -> nn.Module:
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is not None:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    targets = list(settings.target_modules or default_target_modules(model))
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # PEFT: target modules not found in the base model
        raise JobInputError(f"target_modules {targets}: {exc}") from exc


def _names(targets: Any) -> list[str]:
    return [targets] if isinstance(targets, str) else sorted(targets)


def _autocast(device: torch.device):
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
    )


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    examples: Sequence[EncodedExample],
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device,
) -> float:
    """Mean cross-entropy per target token over ``examples`` (next-token prediction)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = _collate(examples[start : start + batch_size], pad_id, device)
        with _autocast(device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = logits.logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        total += float(
            nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                labels.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
        )
        count += int((labels != IGNORE).sum())
    model.train(was_training)
    return total / max(count, 1)


def train_lora(
    model: nn.Module,
    examples: Sequence[ChatExample],
    tokenizer: Tokenizer,
    settings: TrainSettings,
    *,
    init_adapter: Path | None = None,
    device: torch.device | str | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> tuple[nn.Module, TrainReport]:
    """Train a LoRA on ``model`` (a causal LM); returns (PEFT model, report).

    ``init_adapter`` (a PEFT adapter folder) continues from its weights, rank,
    alpha and targets instead of a fresh LoRA from ``settings``. ``on_step(step,
    total, loss)`` runs after every optimizer step; an exception it raises (e.g.
    a cancellation) stops the run. AdamW without weight decay, gradients clipped
    to ``settings.max_grad_norm``.
    """
    _check_settings(settings)
    device = torch.device(device or "cpu")
    encoded = [encode_example(e, tokenizer, settings.max_length) for e in examples]
    kept = [e for e in encoded if e is not None]
    if not kept:
        raise JobInputError(
            f"no conversation has an assistant token within max_length={settings.max_length}; "
            "raise params.max_length or shorten the prompts"
        )
    train_set, eval_set, split = split_examples(kept, settings.eval_fraction, settings.seed)
    per_epoch = math.ceil(len(train_set) / settings.batch_size)
    total = settings.steps or (settings.epochs or 1) * per_epoch

    torch.manual_seed(settings.seed)  # LoRA A initialisation
    peft_model = _wrap(model, settings, init_adapter).to(device)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    if not params:
        raise JobInputError("the adapter has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    eval_kwargs = {"batch_size": settings.batch_size, "pad_id": tokenizer.pad_id, "device": device}
    eval_before = evaluate_loss(peft_model, eval_set, **eval_kwargs)

    batches = _batches(train_set, settings.batch_size, torch.Generator().manual_seed(settings.seed))
    losses: list[float] = []
    for step in range(1, total + 1):
        batch = _collate(next(batches), tokenizer.pad_id, device)
        with _autocast(device):
            loss = peft_model(**batch).loss
        if not torch.isfinite(loss):
            raise JobInputError(f"the loss became {loss.item()} at step {step}; lower lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, total, losses[-1])

    eval_loss = evaluate_loss(peft_model, eval_set, **eval_kwargs)
    config = peft_model.peft_config[peft_model.active_adapter]
    report = TrainReport(
        train_losses=losses,
        eval_loss_before=eval_before,
        eval_loss=eval_loss,
        perplexity=math.exp(min(eval_loss, 700.0)),
        eval_split=split,
        train_examples=len(train_set),
        eval_examples=len(eval_set),
        dropped_examples=len(encoded) - len(kept),
        steps=total,
        epochs=total / per_epoch,
        r=int(config.r),
        lora_alpha=float(config.lora_alpha),
        target_modules=_names(config.target_modules),
        parameter_count=sum(p.numel() for p in params),
        precision="bf16 autocast (fp32 weights)" if device.type == "cuda" else "fp32",
        tokenizer=tokenizer.description,
    )
    peft_model.eval()
    return peft_model, report
