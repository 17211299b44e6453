"""The SDK starts light: what ``import loreg; loreg.Registry(url)`` and a warm pull load.

A budget without timing (bench/sdk_start.py measures the time): fresh
subprocesses list ``sys.modules`` and none of the heavy modules may be there,
neither httpx's command-line tool (click, rich, pygments) nor the model, server
or S3 stacks, nor the transfer machinery a warm pull does not use. See "SDK
start" in docs/design.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from loreg.http import tls_verify_for
from tests.support.fake_registry import API, FakeRegistry, make_adapter_dir, make_registry

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Top-level packages the SDK start must not import.
HEAVY_PACKAGES = (
    "click",
    "rich",
    "pygments",
    "torch",
    "peft",
    "transformers",
    "safetensors",
    "numpy",
    "boto3",
    "botocore",
    "huggingface_hub",
    "fastapi",
    "starlette",
    "pydantic",
    "sqlalchemy",
    "registry",
    "workers",
)
#: Modules (and their submodules) a resolve or a warm pull does not need.
LAZY_MODULES = ("httpx._main", "loreg.transfer", "loreg.fastget", "concurrent.futures")

START_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import loreg

    registry = loreg.Registry("http://127.0.0.1:9")
    json.dump(sorted(sys.modules), sys.stdout)
    """
)

# argv: cache dir, resolve answer (JSON file). The one route serves the resolve answer.
WARM_PULL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from loreg import Registry

    import httpx  # already imported by loreg.client, without its command-line tool

    resolved = json.loads(open(sys.argv[2]).read())

    seen = []

    def answer(request):
        seen.append(request.url.path)
        return httpx.Response(200, json=resolved)

    registry = Registry(
        "http://registry.test", "secret-token", cache_dir=sys.argv[1], progress=False,
        transport=httpx.MockTransport(answer),
    )
    path = registry.pull("medical")
    json.dump({"path": str(path), "seen": seen, "modules": sorted(sys.modules)}, sys.stdout)
    """
)


def clean_env() -> dict[str, str]:
    """The environment without LOREG_* settings (and bytecode allowed, as when installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env["LOREG_NO_PROGRESS"] = "1"
    return env


def run_python(script: str, *args: str) -> dict | list:
    """Run ``script`` in a fresh interpreter from the repository root; its JSON output."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=str(REPO_ROOT),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def over_budget(modules: list[str]) -> list[str]:
    """The heavy or lazy modules among ``modules``."""
    return sorted(
        m
        for m in modules
        if m.split(".", 1)[0] in HEAVY_PACKAGES
        or any(m == lazy or m.startswith(lazy + ".") for lazy in LAZY_MODULES)
    )


def test_import_and_registry_load_no_heavy_module():
    modules = run_python(START_SCRIPT)
    assert isinstance(modules, list)
    # the listing reflects what ran: the client and its HTTP stack are there
    assert {"loreg.client", "loreg.http", "httpx", "httpcore"} <= set(modules)
    assert over_budget(modules) == []


def test_a_warm_pull_loads_no_transfer_machinery(tmp_path: Path):
    fake = FakeRegistry()
    cache = tmp_path / "cache"
    with make_registry(fake, cache) as registry:
        registry.push(make_adapter_dir(tmp_path / "adapter"), "medical")
        cold = registry.pull("medical")
        resolved = registry.resolve("medical")
    answer = tmp_path / "resolved.json"
    answer.write_text(json.dumps(resolved))
    assert API.startswith("http://")

    out = run_python(WARM_PULL_SCRIPT, str(cache), str(answer))
    assert isinstance(out, dict)
    assert out["path"] == str(cold)
    assert out["seen"] == ["/v1/resolve/medical"]  # one request, no blob fetched
    assert over_budget(out["modules"]) == []


def test_an_http_registry_gets_a_context_that_trusts_nothing(monkeypatch):
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    import ssl

    context = tls_verify_for("http://127.0.0.1:8080")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs() == []  # TLS through it fails closed
    assert tls_verify_for("https://registry.example") is True


def test_a_proxy_keeps_the_ca_bundle(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example:3128")
    assert tls_verify_for("http://127.0.0.1:8080") is True
