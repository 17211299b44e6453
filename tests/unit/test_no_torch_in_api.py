"""The API process and the client core never import torch, PEFT or transformers.

Checked in fresh subprocesses, since this test session itself has imported them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "peft", "transformers")

IMPORT_SCRIPT = textwrap.dedent(
    """
    import json, secrets, sys
    from pathlib import Path

    import registry.app
    from registry.settings import Settings

    data_dir = Path(sys.argv[1])
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'loreg.db'}",
        secret_key=secrets.token_hex(16),
    )
    app = registry.app.create_app(settings=settings)
    app.openapi()  # builds every route's schema

    import loreg
    import loreg.cli

    loreg.Registry  # the lazily imported SDK class (pulls in httpx and the client)
    json.dump(sorted(sys.modules), sys.stdout)
    """
)


def clean_env() -> dict[str, str]:
    """The environment without LOREG_* settings that could point at another server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}


def heavy_modules(names: list[str]) -> list[str]:
    """The module names that are, or live inside, torch, PEFT or transformers."""
    return sorted(n for n in names if n.split(".", 1)[0] in HEAVY)


def test_api_app_and_client_core_import_no_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT, str(tmp_path / "data")],
        cwd=str(REPO_ROOT),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)
    # the listing reflects what really ran: the server and SDK stacks are there
    assert {"fastapi", "sqlmodel", "registry.app", "loreg.cli", "loreg.client", "httpx"} <= set(
        modules
    )
    assert heavy_modules(modules) == []


def test_importtime_of_the_api_shows_no_torch():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import registry.app"],
        cwd=str(REPO_ROOT),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]
    assert "registry.app" in imported
    assert heavy_modules(imported) == []


def test_heavy_module_filter():
    names = ["torch", "torch.nn", "peft.tuners", "transformers", "torchvision", "mypeft", "httpx"]
    assert heavy_modules(names) == ["peft.tuners", "torch", "torch.nn", "transformers"]
