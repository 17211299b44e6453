"""End to end, separate processes: serve, CLI push, fresh-process SDK load, logits equal."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.e2e.conftest import run_cli
from tests.support.tiny import byte_ids, save_base_model, tiny_llama, train_lora

pytestmark = pytest.mark.e2e

LOAD_SCRIPT = textwrap.dedent(
    """
    import sys, torch, loreg
    from tests.support.tiny import byte_ids, tiny_llama
    registry = loreg.Registry()
    model = registry.load(tiny_llama(seed=0), sys.argv[1])
    with torch.no_grad():
        logits = model(byte_ids("the patient reports")).logits
    torch.save(logits, sys.argv[2])
    """
)


def test_push_then_fresh_process_loads_identical_adapter(served, tmp_path):
    save_base_model(tmp_path / "tiny-llama", seed=0)
    run_cli(
        served,
        tmp_path / "c0",
        "base",
        "push",
        str(tmp_path / "tiny-llama"),
        "--name",
        "tiny-llama",
    )
    trained, losses = train_lora(tmp_path / "out", steps=5)
    assert losses[-1] < losses[0]
    prompt = byte_ids("the patient reports")
    with torch.no_grad():
        expected = trained(prompt).logits
        base_logits = tiny_llama(seed=0)(prompt).logits

    pushed = run_cli(
        served,
        tmp_path / "c1",
        "--json",
        "push",
        str(tmp_path / "out"),
        "--name",
        "medical",
        "--base-model",
        "tiny-llama",
    )
    info = json.loads(pushed.stdout)
    assert info["ref"] == "default/medical-v1" and info["created"] is True

    # a fresh process with an empty cache
    cache = tmp_path / "fresh-cache"
    out_file = tmp_path / "logits.pt"
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, "medical-v1", str(out_file)],
        env=served.env(cache),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert proc.returncode == 0, proc.stderr
    got = torch.load(out_file)
    assert torch.allclose(got, expected, atol=1e-6), (got - expected).abs().max()
    assert not torch.allclose(got, base_logits, atol=1e-3)

    # pushing byte-identical content again: exit 0, same version
    again = run_cli(
        served,
        tmp_path / "c1",
        "--json",
        "push",
        str(tmp_path / "out"),
        "--name",
        "medical",
        "--base-model",
        "tiny-llama",
    )
    assert json.loads(again.stdout)["version"] == 1
    assert json.loads(again.stdout)["created"] is False


def test_cli_catalog_commands(served, tmp_path):
    from tests.support.tiny import save_adapter

    save_adapter(tmp_path / "a", seed=3)
    run_cli(served, tmp_path / "c", "push", str(tmp_path / "a"), "--name", "legal")
    pulled = run_cli(served, tmp_path / "c", "pull", "legal-v1").stdout.strip()
    assert (Path(pulled) / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "a" / "adapter_model.safetensors"
    ).read_bytes()
    listing = json.loads(run_cli(served, tmp_path / "c", "--json", "ls").stdout)
    assert "legal" in [a["name"] for a in listing]
    shown = json.loads(run_cli(served, tmp_path / "c", "--json", "show", "legal").stdout)
    assert shown["version"] == 1 and shown["digest"].startswith("sha256:")
    run_cli(served, tmp_path / "c", "alias", "legal-v1", "prod")
    at_prod = run_cli(served, tmp_path / "c2", "pull", "legal@prod").stdout.strip()
    assert Path(at_prod).is_dir()
    run_cli(served, tmp_path / "c", "alias", "--rm", "legal", "prod")
    gone = run_cli(served, tmp_path / "c3", "pull", "legal@prod", check=False)
    assert gone.returncode != 0
    assert gone.stderr.strip().startswith("error:") and len(gone.stderr.strip().splitlines()) == 1
    bad = run_cli(served, tmp_path / "c3", "pull", "Not_A_Ref!", check=False)
    assert bad.returncode != 0 and "error:" in bad.stderr
    # offline mode resolves from the cache alone
    offline = run_cli(
        served,
        tmp_path / "c",
        "pull",
        "legal-v1",
        LOREG_OFFLINE="1",
        HTTP_PROXY="http://127.0.0.1:9",
        ALL_PROXY="http://127.0.0.1:9",
        NO_PROXY="",
    )
    assert offline.stdout.strip() == pulled
