"""httpx, imported without its command-line tool.

``httpx/__init__.py`` (0.2x) ends with ``try: from ._main import main except
ImportError: <stub>``: whenever click, pygments and rich are installed (uvicorn,
typer and transformers bring them) every ``import httpx`` also loads its
terminal client, about 40-50 ms of the SDK's ~180 ms start, for a module the SDK
never uses. The fork httpx2 made that import lazy (pydantic/httpx2#947).

:func:`import_without` takes the path httpx already has for installs without
its ``cli`` extra: while httpx is first imported, ``sys.modules`` holds None for
``httpx._main``, so that one import raises ImportError and httpx defines its
stub ``main``. The guard is removed right after (a later ``import httpx._main``
works), is not set when httpx is already imported, and when a future httpx
imports the module unconditionally the import is simply retried without it.
What a process that imported loreg first loses: ``httpx.main`` is the stub
(the ``httpx`` console script runs in its own process and is unaffected).

Every loreg module imports httpx as ``from loreg._httpx import httpx``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

#: httpx's command-line tool: click, rich and pygments, none of which the SDK needs.
HTTPX_CLI = "httpx._main"


def import_without(package: str, submodule: str) -> ModuleType:
    """Import ``package`` while ``submodule`` (which it imports optionally) is blocked.

    Does nothing special when ``package`` is already imported or ``submodule``
    is already loaded. The block lasts only for this import; when the package
    fails to import with it (it no longer treats the submodule as optional),
    it is imported again normally.
    """
    if package in sys.modules or submodule in sys.modules:
        return importlib.import_module(package)
    sys.modules[submodule] = None  # type: ignore[assignment]  # "import halted": ImportError
    try:
        return importlib.import_module(package)
    except ImportError:
        _unblock(submodule)
        _forget(package)
        return importlib.import_module(package)
    finally:
        _unblock(submodule)


def _unblock(submodule: str) -> None:
    """Remove the None entry for ``submodule`` (and only that)."""
    if submodule in sys.modules and sys.modules[submodule] is None:
        del sys.modules[submodule]


def _forget(package: str) -> None:
    """Drop the half-imported modules of ``package`` so it can be imported again."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


import_without("httpx", HTTPX_CLI)

import httpx  # noqa: E402 - imported just above; this binds the name for type checkers

__all__ = ["HTTPX_CLI", "httpx", "import_without"]
