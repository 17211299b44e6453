"""Loading pulled adapters into a model with PEFT (imported lazily: ``import peft`` is slow).

Several adapters can live on one base model, each under its own adapter name;
one is active at a time. Names derived from refs are per version
(``default/medical-v1`` -> ``default__medical__v1``) and are valid torch
module keys (no ``.``).

int8 adapters (safetensors metadata ``format`` = :data:`INT8_FORMAT`, made by
the registry's compress job: ``<module>.lora_X.qweight`` int8 values and
``.scales`` float32 per-row scales) are dequantized to float32
(``qweight * scales[:, None]``) into a temporary PEFT folder before loading.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loreg.constants import INT8_FORMAT
from loreg.errors import LoregError, NotFoundError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def adapter_name_for(namespace: str, name: str, version: int) -> str:
    """The default adapter name of a version: ``acme/med.v2-v3`` -> ``acme__med_v2__v3``."""
    return f"{_UNSAFE.sub('_', namespace)}__{_UNSAFE.sub('_', name)}__v{int(version)}"


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise LoregError(
            "loading adapters needs PEFT and torch: pip install 'loreg[model]'"
        ) from exc
    return peft


def is_peft_model(model: Any) -> bool:
    """True when ``model`` is already a ``peft.PeftModel``."""
    return isinstance(model, _peft().PeftModel)


def loaded_adapters(model: Any) -> list[str]:
    """Names of the adapters loaded on a PeftModel (empty for a plain model)."""
    config = getattr(model, "peft_config", None)
    return list(config) if isinstance(config, dict) else []


def load_adapter(
    model: Any,
    path: str | os.PathLike[str],
    adapter_name: str,
    *,
    is_trainable: bool = False,
    replace: bool = False,
) -> Any:
    """Load the adapter folder ``path`` onto ``model`` under ``adapter_name`` and activate it.

    A plain model is wrapped with ``PeftModel.from_pretrained``; a PeftModel gets
    ``load_adapter``. If the name is already loaded it is re-activated, or, with
    ``replace=True``, deleted and loaded again from ``path``. Returns the PeftModel.
    """
    if "." in adapter_name or not adapter_name:
        raise LoregError(f"adapter name {adapter_name!r} must be non-empty and contain no '.'")
    if is_int8_adapter(path):
        with tempfile.TemporaryDirectory(prefix="loreg-int8-") as tmp:
            folder = dequantize_int8_folder(path, Path(tmp) / "adapter")
            return load_adapter(
                model, folder, adapter_name, is_trainable=is_trainable, replace=replace
            )
    peft = _peft()
    if not isinstance(model, peft.PeftModel):
        return peft.PeftModel.from_pretrained(
            model, str(path), adapter_name=adapter_name, is_trainable=is_trainable
        )
    if adapter_name in model.peft_config:
        if not replace:
            use_adapter(model, adapter_name)
            return model
        model.delete_adapter(adapter_name)
    model.load_adapter(str(path), adapter_name=adapter_name, is_trainable=is_trainable)
    use_adapter(model, adapter_name)
    return model


def is_int8_adapter(path: str | os.PathLike[str]) -> bool:
    """True when the folder's weights are in the int8 format (read from the header only)."""
    weights = Path(path) / ADAPTER_WEIGHTS
    if not weights.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        return (handle.metadata() or {}).get("format") == INT8_FORMAT


def dequantize_int8_folder(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Write a float32 PEFT copy of the int8 adapter folder ``path`` to ``dest``; returns it.

    Each factor is ``qweight * scales[:, None]``; the other files are copied unchanged.
    """
    import torch
    from safetensors.torch import load_file, save_file

    source, target = Path(path), Path(dest)
    tensors = load_file(str(source / ADAPTER_WEIGHTS))
    factors: dict[str, Any] = {}
    for key, values in tensors.items():
        stem, _, kind = key.rpartition(".")
        if kind == "scales":
            continue
        scales = tensors.get(f"{stem}.scales")
        if kind != "qweight" or values.dtype != torch.int8 or values.ndim != 2:
            raise LoregError(
                f"{key}: an int8 adapter holds only 2-D int8 '.qweight' tensors and their "
                "'.scales'; this file is damaged: pull it again"
            )
        if scales is None or scales.ndim != 1 or scales.shape[0] != values.shape[0]:
            raise LoregError(
                f"{key}: missing or misshaped '{stem}.scales' (one per row); "
                "this file is damaged: pull it again"
            )
        factors[f"{stem}.weight"] = values.to(torch.float32) * scales.to(torch.float32)[:, None]
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and item.name != ADAPTER_WEIGHTS:
            shutil.copyfile(item, target / item.name)
    save_file(factors, str(target / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return target


def use_adapter(model: Any, adapter_name: str) -> Any:
    """Make a loaded adapter the active one; returns the model."""
    _require_loaded(model, adapter_name)
    frozen = bool(getattr(model.peft_config[adapter_name], "inference_mode", True))
    model.set_adapter(adapter_name, inference_mode=frozen)
    return model


def unload_adapter(model: Any, adapter_name: str) -> Any:
    """Delete a loaded adapter (its weights are freed) and return the model to keep using.

    If it was active, the most recently loaded remaining adapter becomes active.
    Unloading the last adapter removes the LoRA layers and returns the plain base
    model (a PeftModel cannot run without an adapter).
    """
    _require_loaded(model, adapter_name)
    remaining = [name for name in loaded_adapters(model) if name != adapter_name]
    if not remaining:
        return model.unload()
    active = model.active_adapter
    keep = active if active in remaining else remaining[-1]
    # Switch first: PEFT loses track of the active adapter when the deleted one
    # was active and the adapters target different modules.
    use_adapter(model, keep)
    model.delete_adapter(adapter_name)
    use_adapter(model, keep)
    return model


def _require_loaded(model: Any, adapter_name: str) -> None:
    names = loaded_adapters(model)
    if adapter_name not in names:
        loaded = ", ".join(names) or "none"
        raise NotFoundError(
            f"adapter {adapter_name!r} is not loaded on this model (loaded: {loaded}); "
            "load it first with registry.load(model, ref)"
        )
