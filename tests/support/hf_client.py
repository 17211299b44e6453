"""Run the stock Hugging Face client in a subprocess pointed at a test registry's ``/hf``.

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME`` and
``HF_HUB_OFFLINE`` when it is imported, exactly as a user's process would, so each
call runs a fresh interpreter with that environment. The script prints one JSON
value on its last line, which :func:`run_hf` returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Prepended to every script: a helper that names the exception a call raised.
PRELUDE = """
import json, hashlib, os, sys
def error_of(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except Exception as exc:
        return type(exc).__name__
    return None
def sha256_of(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
"""


def hf_env(endpoint: str, token: str | None, hf_home: Path, *, offline: bool = False) -> dict:
    """The environment of a process whose Hugging Face client talks to ``endpoint`` only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1" if offline else "0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_OFFLINE="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_hf(
    code: str,
    endpoint: str,
    token: str | None,
    hf_home: Path,
    *,
    offline: bool = False,
    timeout: float = 120,
) -> Any:
    """Run ``code`` (which prints a JSON value last) with the client configured; its result."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        env=hf_env(endpoint, token, hf_home, offline=offline),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, (
        f"client script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])
