"""End to end against a real ``loreg serve``, both modes: the ``hf`` CLI downloads an alias,
and PEFT's ``from_pretrained`` through ``HF_ENDPOINT`` gives the logits ``registry.load`` gives.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import loreg
from tests.e2e.conftest import run_cli
from tests.support.hf_client import hf_env
from tests.support.tiny import byte_ids, save_adapter, tiny_llama

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
HF = str(Path(sys.executable).parent / "hf")

PEFT_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from peft import PeftModel
    from tests.support.tiny import byte_ids, tiny_llama
    model = PeftModel.from_pretrained(tiny_llama(seed=0), "default/medical", revision=sys.argv[1])
    with torch.no_grad():
        torch.save(model(byte_ids("the patient reports")).logits, sys.argv[2])
    """
)


@pytest.fixture(params=["served", "served_production"])
def server(request):
    """The embedded default (SQLite + local store) and production (Postgres + S3)."""
    return request.getfixturevalue(request.param)


def test_hf_cli_download_and_peft_from_pretrained(server, tmp_path):
    folder = save_adapter(tmp_path / "adapter", seed=3)
    pushed = run_cli(server, tmp_path / "c", "--json", "push", str(folder), "--name", "medical")
    info = json.loads(pushed.stdout)
    run_cli(server, tmp_path / "c", "alias", info["ref"], "prod")
    reg = loreg.Registry(
        url=server.url, token=server.token, cache_dir=tmp_path / "sdk", progress=False
    )
    resolved = reg.resolve(info["ref"])
    env = hf_env(server.url + "/hf", server.token, tmp_path / "hf-home")

    out = tmp_path / "downloaded"
    proc = subprocess.run(
        [HF, "download", "default/medical", "--revision", "prod", "--local-dir", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }
    assert got == {f["path"]: f["sha256"] for f in resolved["files"]}

    logits_file = tmp_path / "peft.pt"
    proc = subprocess.run(
        [sys.executable, "-c", PEFT_SCRIPT, f"v{info['version']}", str(logits_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    via_hub = torch.load(logits_file)
    prompt = byte_ids("the patient reports")
    with torch.no_grad():
        via_loreg = reg.load(tiny_llama(seed=0), info["ref"])(prompt).logits
        base = tiny_llama(seed=0)(prompt).logits
    assert torch.allclose(via_hub, via_loreg, atol=1e-6), (via_hub - via_loreg).abs().max()
    assert not torch.allclose(via_hub, base, atol=1e-3)  # the adapter did something
