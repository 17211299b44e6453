"""Run the stock Hugging Face client in a subprocess pointed at a test registry's ``/hf``.

``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME`` and
``HF_HUB_OFFLINE`` when it is imported, exactly as a user's process would, so each
call runs a fresh interpreter with that environment (the test process itself keeps
``HF_HUB_OFFLINE=1``), and no request leaves the machine. Two forms:

* :func:`run_hf`: a script that prints one JSON value on its last line (``error_of``
  and ``sha256_of`` are predefined);
* :func:`run_snippet`: a snippet that fills the dict ``out``; ``attempt`` records a
  call's result or its error (type, status, message) instead of raising.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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


_MARK = "@@HF_RESULT@@"
_SNIPPET_PRELUDE = '''
import json, sys
from huggingface_hub import HfApi

def attempt(fn, *args, **kwargs):
    """fn's result (a commit's oid, a URL ...) or {"error", "status", "message"}."""
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        response = getattr(exc, "response", None)
        return {
            "error": type(exc).__name__,
            "status": getattr(response, "status_code", None),
            "message": str(exc),
        }
    return getattr(value, "oid", None) or str(value)

out = {}
'''


def hf_env(
    endpoint: str, token: str | None, hf_home: Path, *, offline: bool = False, **extra: str
) -> dict[str, str]:
    """The environment of a process whose Hugging Face client talks to ``endpoint`` only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1" if offline else "0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_OFFLINE="1",
        **extra,
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


def run_snippet(
    url: str, token: str, home: Path, code: str, *, timeout: float = 180, **extra_env: str
) -> dict[str, Any]:
    """Run ``code`` against ``<url>/hf`` with ``out`` and ``attempt`` predefined; its ``out``."""
    script = _SNIPPET_PRELUDE + textwrap.dedent(code) + f"\nprint({_MARK!r} + json.dumps(out))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=hf_env(f"{url}/hf", token, home, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
    raise AssertionError(
        f"the client snippet failed ({proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
