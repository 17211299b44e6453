"""Drive the stock ``huggingface_hub`` client against a registry, in a subprocess (snippets).

The snippet form used by the write-side tests; tests.support.hf_client has the
script form used by the read-side tests.

The test process runs with ``HF_HUB_OFFLINE=1``; the client runs in a child with
``HF_ENDPOINT=<registry>/hf`` and a loreg token as ``HF_TOKEN``, so no request
leaves the machine. A snippet fills the dict ``out``; :func:`attempt` records a
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

_MARK = "@@HF_RESULT@@"
_PRELUDE = '''
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


def hf_env(url: str, token: str, home: Path, **extra: str) -> dict[str, str]:
    """The child's environment: the registry's ``/hf`` endpoint, the token, a private HF_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=f"{url}/hf",
        HF_TOKEN=token,
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        **extra,
    )
    return env


def run_hf(
    url: str, token: str, home: Path, code: str, *, timeout: float = 180, **extra_env: str
) -> dict[str, Any]:
    """Run ``code`` after :data:`_PRELUDE` with the stock client; returns its ``out`` dict."""
    script = _PRELUDE + textwrap.dedent(code) + f"\nprint({_MARK!r} + json.dumps(out))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=hf_env(url, token, home, **extra_env),
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
