"""``loreg._httpx.import_without``: an optional submodule skipped while a package is imported.

Exercised on throw-away packages written to ``tmp_path`` (httpx itself is
already imported in this session), and on httpx in a fresh interpreter.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from loreg._httpx import import_without

OPTIONAL = """
try:
    from ._cli import main
except ImportError:
    main = None
"""
REQUIRED = "from ._cli import main\n"
CLI = "main = 'the real cli'\n"


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` on sys.path; the fake packages' modules are dropped afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.split(".", 1)[0].startswith("fakepkg_")]:
        del sys.modules[name]


def write_package(root: Path, name: str, init: str) -> None:
    """``root/name``: an ``__init__`` and the ``_cli`` submodule it imports."""
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text(init)
    (folder / "_cli.py").write_text(CLI)
    importlib.invalidate_caches()


def test_an_optional_submodule_is_skipped_and_importable_afterwards(packages: Path):
    write_package(packages, "fakepkg_optional", OPTIONAL)
    module = import_without("fakepkg_optional", "fakepkg_optional._cli")
    assert module.main is None
    assert "fakepkg_optional._cli" not in sys.modules  # no None entry left behind
    import fakepkg_optional._cli  # type: ignore[import-not-found]

    assert fakepkg_optional._cli.main == "the real cli"


def test_a_package_that_requires_the_submodule_is_imported_normally(packages: Path):
    write_package(packages, "fakepkg_required", REQUIRED)
    module = import_without("fakepkg_required", "fakepkg_required._cli")
    assert module.main == "the real cli"
    assert sys.modules["fakepkg_required._cli"] is not None


def test_an_imported_package_is_left_alone(packages: Path):
    write_package(packages, "fakepkg_loaded", OPTIONAL)
    import fakepkg_loaded  # type: ignore[import-not-found]

    assert fakepkg_loaded.main == "the real cli"
    assert import_without("fakepkg_loaded", "fakepkg_loaded._cli") is fakepkg_loaded
    assert fakepkg_loaded.main == "the real cli"


def test_httpx_imported_through_loreg_works_and_skips_only_its_cli():
    script = textwrap.dedent(
        """
        import importlib.util, json, sys

        have_cli = all(importlib.util.find_spec(m) for m in ("click", "rich", "pygments"))
        from loreg._httpx import httpx

        skipped = [m for m in ("httpx._main", "click", "rich", "pygments") if m in sys.modules]
        reply = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204))).get(
            "http://x.test/"
        )
        try:
            import httpx._main  # still importable on demand, where its extras are installed
            cli = True
        except ImportError:
            cli = False
        out = {"skipped": skipped, "status": reply.status_code, "cli": cli == have_cli}
        json.dump(out, sys.stdout)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"skipped": [], "status": 204, "cli": True}
