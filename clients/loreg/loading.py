"""Loading pulled adapters into a model with PEFT (imported lazily: ``import peft`` is slow).

Several adapters can live on one base model, each under its own adapter name;
one is active at a time. Names derived from refs are per version
(``default/medical-v1`` -> ``default__medical__v1``) and are valid torch
module keys (no ``.``).
"""

from __future__ import annotations

import os
import re
from typing import Any

from loreg.errors import LoregError, NotFoundError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


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
