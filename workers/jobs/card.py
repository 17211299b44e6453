"""Card job: compute a version's card from its weights (docs/design.md §7, Cards).

The one input is the version. Numpy only, and never a whole file in memory:
the safetensors header is read by range (``registry.validation.safetensors_header``),
then each LoRA factor by its own range (``ObjectStore.read_range``), reduced at once
to the ``R`` of its QR (:mod:`workers.ops.card`) and dropped before the next is
read. The README.md is read by one bounded range. The card is the computed figures
merged with what a job result's own card said (``metadata.card``: method, parents,
energy kept ...; those keys are kept, the computed ones win, and the whole original
stays under ``job``).

The version's ``version_cards`` row ends ``ready`` (card and README) or ``failed``
(the error: a missing blob, an unreadable tensor). A transient store or database
error leaves it ``pending`` and the job is retried like any other. Nothing is
published: the job's result names the version and the card status.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlmodel import Session, select

from loreg.constants import INT8_FORMAT
from loreg.vocabulary import CardStatus
from registry.errors import RegistryError
from registry.models import Version, VersionFile
from registry.services import cards, search_index
from registry.storage.base import ObjectStore, blob_key
from registry.validation.patterns import MatchBudget, rank_key_pattern
from registry.validation.peft_config import (
    PEFT_PREFIX,
    LoraModuleShape,
    LoraSummary,
    validate_lora_config,
)
from registry.validation.safetensors_header import (
    SafetensorsHeader,
    TensorInfo,
    read_safetensors_header,
)
from workers.errors import JobInputError
from workers.ops.card import ModuleFigures, module_figures, r_factor
from workers.runner import JobCancelled, JobContext, JobLost, JobOutput, is_transient

WEIGHTS = "adapter_model.safetensors"
README = "README.md"
#: Singular values listed per module in the card (all of them are used for the figures).
MAX_SINGULAR_VALUES = 256
_PREFIX_BYTES = 8

_NUMPY_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1"}


# --------------------------------------------------------------------------- reading


def decode_tensor(raw: bytes, info: TensorInfo) -> np.ndarray:
    """The bytes of one safetensors tensor as a float64 numpy array of its shape."""
    if info.dtype == "BF16":  # bfloat16 is the top half of a float32
        wide = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        values = wide.view(np.float32)
    elif info.dtype in _NUMPY_DTYPES:
        values = np.frombuffer(raw, dtype=_NUMPY_DTYPES[info.dtype])
    else:
        raise JobInputError(f"a LoRA factor of dtype {info.dtype} cannot be read")
    return values.astype(np.float64).reshape(info.shape)


class TensorReader:
    """Reads single tensors of one stored safetensors file by range."""

    def __init__(self, store: ObjectStore, key: str, size: int, path: str):
        self.store, self.key, self.path = store, key, path
        self.header: SafetensorsHeader = read_safetensors_header(
            lambda start, end: store.read_range(key, start, end), size, path=path
        )
        self.data_start = _PREFIX_BYTES + self.header.header_size

    def read(self, name: str) -> np.ndarray:
        """Tensor ``name`` (one range read of exactly its bytes), as float64."""
        info = self.header.tensors.get(name)
        if info is None:
            raise JobInputError(f"{self.path}: tensor {name!r} is not in the file")
        raw = self.store.read_range(
            self.key, self.data_start + info.start, self.data_start + info.end
        )
        if len(raw) != info.end - info.start:
            raise JobInputError(
                f"{self.path}: tensor {name!r} read {len(raw)} of {info.end - info.start} bytes "
                "(the stored file is truncated)"
            )
        return decode_tensor(raw, info)

    @property
    def int8(self) -> bool:
        """Whether the file is in the compress job's int8 row-wise format."""
        return self.header.metadata.get("format") == INT8_FORMAT

    def factor_names(self, module: LoraModuleShape, half: str) -> list[str]:
        """The tensors holding a module's factor ``A`` or ``B`` (int8: values, then scales)."""
        if module.kind == "embedding":
            return [f"{PEFT_PREFIX}{module.module}.lora_embedding_{half}"]
        stem = f"{PEFT_PREFIX}{module.module}.lora_{half}"
        return [f"{stem}.qweight", f"{stem}.scales"] if self.int8 else [f"{stem}.weight"]

    def factor(self, module: LoraModuleShape, half: str) -> np.ndarray:
        """A module's factor ``A`` or ``B`` (an int8 one dequantized: ``qweight · scales``)."""
        names = self.factor_names(module, half)
        if len(names) == 2:
            scales = self.read(names[1])
            return self.read(names[0]) * scales[:, None]
        return self.read(names[0])

    def factor_dtype(self, module: LoraModuleShape) -> str:
        """The stored dtype(s) of a module's factors (``F32``, or ``I8,F32`` for int8)."""
        names = self.factor_names(module, "A") + self.factor_names(module, "B")
        return ",".join(sorted({self.header.tensors[n].dtype for n in names}))


def read_readme(store: ObjectStore, key: str, size: int) -> tuple[str, bool]:
    """The README's text, at most :data:`cards.README_MAX_BYTES` (cut on a UTF-8 boundary)."""
    limit = cards.README_MAX_BYTES
    raw = store.read_range(key, 0, min(size, limit))
    truncated = size > limit
    for cut in range(4):  # a cut through a multi-byte character drops its first bytes
        try:
            return raw[: len(raw) - cut].decode("utf-8"), truncated
        except UnicodeDecodeError:
            if not truncated:
                break
    return raw.decode("utf-8", errors="replace"), truncated


# --------------------------------------------------------------------------- the card


def module_alpha(config: dict[str, Any], module: str) -> float:
    """``lora_alpha`` of a module: the first matching ``alpha_pattern`` key (PEFT's rule)."""
    budget = MatchBudget()
    for key, alpha in (config.get("alpha_pattern") or {}).items():
        if rank_key_pattern(key, "alpha_pattern").match(module, budget):
            return float(alpha)
    return float(config.get("lora_alpha", 8))


def _module_entry(name: str, figures: ModuleFigures, dtype: str, kind: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "dtype": dtype,
        **figures.to_dict(MAX_SINGULAR_VALUES),
    }


def adapter_figures(
    reader: TensorReader,
    config: dict[str, Any],
    summary: LoraSummary,
    report: Callable[[float, str], None],
) -> dict[str, Any]:
    """The per-module table and the adapter totals of a LoRA weights file."""
    use_rslora = bool(config.get("use_rslora", False))
    modules: list[dict[str, Any]] = []
    total = len(summary.modules)
    for n, (name, shape) in enumerate(sorted(summary.modules.items())):
        r_b = r_factor(reader.factor(shape, "B"))  # B: [d, r]; only R_B is kept
        r_a = r_factor(reader.factor(shape, "A").T)  # Aᵀ: [k, r]
        figures = module_figures(
            r_b,
            r_a,
            shape=(shape.out_features, shape.in_features),
            alpha=module_alpha(config, name),
            use_rslora=use_rslora,
        )
        modules.append(_module_entry(name, figures, reader.factor_dtype(shape), shape.kind))
        report(0.1 + 0.8 * (n + 1) / max(total, 1), f"module {n + 1}/{total}: {name}")
    norms = [m["frobenius_norm"] for m in modules]
    ranks = sorted({m["rank"] for m in modules})
    return {
        "peft_type": config.get("peft_type"),
        "use_rslora": use_rslora,
        "use_dora": bool(config.get("use_dora", False)),
        "storage": INT8_FORMAT if reader.int8 else "peft",  # the compress job's words
        "lora_parameter_count": sum(m["parameter_count"] for m in modules),
        "parameter_count": summary.parameter_count,
        "weights_bytes": reader.header.data_size + reader.header.header_size + _PREFIX_BYTES,
        "dtypes": sorted({info.dtype for info in reader.header.tensors.values()}),
        "ranks": ranks,
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "alphas": sorted({m["alpha"] for m in modules}),
        "target_modules": config.get("target_modules"),
        "module_count": len(modules),
        "frobenius_norm": math.sqrt(sum(x * x for x in norms)),
        "effective_rank_mean": (
            sum(m["effective_rank"] for m in modules) / len(modules) if modules else None
        ),
        "modules": modules,
    }


def build_card(
    version: Version,
    files: list[VersionFile],
    store: ObjectStore,
    report: Callable[[float, str], None],
) -> tuple[dict[str, Any], str | None]:
    """The card of a version and its README text (None when it has no README.md)."""
    by_path = {f.path: f for f in files}
    card: dict[str, Any] = {
        "card_schema": 1,
        "digest": version.digest,
        "size_bytes": version.size,
        "file_count": len(files),
        "files": [{"path": f.path, "size": f.size} for f in sorted(files, key=lambda f: f.path)],
        "base_model": version.base_model,
    }
    weights = by_path.get(WEIGHTS)
    if weights is not None and isinstance(version.config, dict):
        reader = TensorReader(store, blob_key(weights.blob_sha256), weights.size, WEIGHTS)
        try:
            header = reader.header
            summary = validate_lora_config(version.config, header.tensors, header.metadata)
        except RegistryError as exc:
            raise JobInputError(f"{WEIGHTS}: {exc.message}") from None
        card.update(adapter_figures(reader, version.config, summary, report))
    readme_text: str | None = None
    readme = by_path.get(README)
    if readme is not None:
        readme_text, truncated = read_readme(store, blob_key(readme.blob_sha256), readme.size)
        card["readme_bytes"] = readme.size
        card["readme_truncated"] = truncated
    declared = (version.meta or {}).get("card")
    if isinstance(declared, dict) and declared:
        card = {**declared, **card, "job": declared}
    return card, readme_text


# --------------------------------------------------------------------------- the job


def run(jc: JobContext) -> JobOutput:
    """Compute the card of the input version and end its ``version_cards`` row."""
    inputs = jc.job.inputs or []
    if len(inputs) != 1:
        raise JobInputError(f"a card job takes exactly one input, got {len(inputs)}")
    item = inputs[0]
    version_id = int(item["version_id"])
    with Session(jc.ctx.engine, expire_on_commit=False) as session:
        version = session.get(Version, version_id)
        if version is None:
            raise JobInputError(f"{item['ref']} no longer exists; its card went with it")
        files = list(session.exec(select(VersionFile).where(VersionFile.version_id == version_id)))
    jc.report(0.05, f"computing the card of {item['ref']}")
    try:
        card, readme = build_card(version, files, jc.ctx.store, jc.report)
    except JobLost:
        raise
    except JobCancelled:
        _fail(jc, version_id, "the card job was cancelled; recompute it to retry")
        raise
    except Exception as exc:
        if is_transient(exc):
            raise  # the card stays pending; the job is retried
        message = _describe(exc)
        _fail(jc, version_id, message)
        raise JobInputError(message) from exc
    with Session(jc.ctx.engine) as session:
        owned = cards.record_ready(session, version_id, jc.job.id, card, readme)
        if owned:  # the card text is searched: the document is rewritten with the card
            search_index.refresh_adapter(session, version.adapter_id)
        session.commit()
    status = CardStatus.READY if owned else "superseded"
    jc.report(0.95, f"card {status}: {item['ref']}")
    return JobOutput(
        folder=None,
        unchanged={
            "ref": item["ref"],
            "version": version.number,
            "digest": version.digest,
            "card_status": str(status),
        },
    )


def _describe(exc: BaseException) -> str:
    from registry.storage.base import ObjectNotFound

    if isinstance(exc, ObjectNotFound):
        return f"a file of the version is missing from the store ({exc}); re-send it, then retry"
    if isinstance(exc, RegistryError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, JobInputError | ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _fail(jc: JobContext, version_id: int, message: str) -> None:
    with Session(jc.ctx.engine) as session:
        cards.record_failed(session, version_id, jc.job.id, message)
        session.commit()
