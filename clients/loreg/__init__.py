"""loreg: a registry for LoRA adapters. Client SDK.

>>> import loreg
>>> registry = loreg.Registry()          # LOREG_URL / LOREG_TOKEN
>>> path = registry.pull("medical-v3")   # local snapshot folder
>>> model = registry.load(base_model, "medical@prod")

``import loreg`` stays cheap: the HTTP client (httpx) is imported on first use
of :class:`Registry`, PEFT only when a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loreg._version import __version__
from loreg.errors import (
    AuthenticationError,
    ConflictError,
    IntegrityError,
    InvalidNameError,
    InvalidRefError,
    LoregError,
    NotFoundError,
    OfflineCacheMissError,
    PermissionDeniedError,
    RequestError,
    ServerError,
    ValidationFailedError,
)
from loreg.notices import DeprecatedAdapterWarning, LoregWarning, YankedVersionWarning

if TYPE_CHECKING:
    from loreg.client import PushResult, Registry

_LAZY = {"Registry": "loreg.client", "PushResult": "loreg.client"}

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "DeprecatedAdapterWarning",
    "IntegrityError",
    "InvalidNameError",
    "InvalidRefError",
    "LoregError",
    "LoregWarning",
    "NotFoundError",
    "OfflineCacheMissError",
    "PermissionDeniedError",
    "PushResult",
    "Registry",
    "RequestError",
    "ServerError",
    "ValidationFailedError",
    "YankedVersionWarning",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import :class:`Registry` and :class:`PushResult` on first access."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'loreg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
