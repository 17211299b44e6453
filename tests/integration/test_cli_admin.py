"""``loreg token create|ls|revoke``, ``loreg audit`` and ``loreg preset save|ls|show|rm``
against a real registry on both backends (the CLI in-process, its SDK over HTTP)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import loreg
from loreg import cli


@pytest.fixture
def run(registry_server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch):
    """``loreg ARGS`` as the admin (or ``--token``); returns (exit code, stdout, stderr)."""
    for name in ("LOREG_OFFLINE", "LOREG_DEBUG", "LOREG_TOKEN", "LOREG_URL"):
        monkeypatch.delenv(name, raising=False)

    def factory(args):
        token = getattr(args, "token", None) or registry_server.admin_token
        return loreg.Registry(url=registry_server.url, token=token, cache_dir=tmp_path / "c")

    def runner(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv), registry_factory=factory)
        out, err = capsys.readouterr()
        return code, out, err

    return runner


def test_token_create_with_expiry_ls_and_revoke(run):
    code, out, err = run("token", "create", "ci", "--grant", "default:read", "--expires", "30d")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("lrg_") and "shown only once" in err
    code, out, err = run("token", "ls", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["ci", "admin"]
    expires = datetime.fromisoformat(listed[0]["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    code, out, _ = run("token", "ls", "--limit", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["ID", "NAME", "PREFIX", "GRANTS", "STATE"]
    assert len(lines) == 2 and " ci " in lines[1] and "active" in lines[1]
    code, out, _ = run("whoami", "--token", secret)
    assert code == 0 and out.startswith("ci @ ")
    code, out, err = run("token", "revoke", str(listed[0]["id"]))
    assert code == 0 and "revoked at" in out, err
    code, _, err = run("whoami", "--token", secret)
    assert code != 0 and "revoked" in err and err.count("\n") == 1
    code, _, err = run("token", "create", "x", "--grant", "default:read", "--expires", "soon")
    assert code != 0 and "not a duration" in err
    code, _, err = run("token", "revoke", "0")
    assert code == 2 and "at least 1" in err


def test_audit_filters_and_limit(run):
    for name in ("a", "b", "c"):
        assert run("token", "create", name, "--grant", "default:read")[0] == 0
    code, out, err = run("audit", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["target"] for r in rows] == ["c", "b", "a"]
    assert all(r["action"] == "token.create" and r["actor"] == "admin" for r in rows)
    code, out, _ = run("audit", "--limit", "2", "--json")
    assert [r["target"] for r in json.loads(out)] == ["c", "b"]
    code, out, _ = run("audit", "--target", "b", "--since", "1h", "--json")
    assert [r["target"] for r in json.loads(out)] == ["b"]
    code, out, _ = run("audit", "--until", "1h", "--json")
    assert json.loads(out) == []
    code, out, _ = run("audit", "--action", "token.create", "--limit", "1")
    lines = out.splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "ACTION", "NAMESPACE", "TARGET", "CHANGE"]
    assert "token.create" in lines[1] and '- -> {"default_namespace"' in lines[1]
    code, secret, _ = run("token", "create", "reader", "--grant", "default:read")
    code, _, err = run("audit", "--token", secret.strip())
    assert code != 0 and "admin" in err


def test_preset_save_ls_show_rm(run):
    code, out, err = run(
        "preset", "save", "clinical", "--r", "16", "--alpha", "32",
        "--target-modules", "q_proj,v_proj", "--steps", "10", "--description", "clinic notes",
    )  # fmt: skip
    assert code == 0, err
    assert "preset default/clinical saved: r=16 lora_alpha=32.0" in out
    code, out, err = run("preset", "show", "clinical", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["params"] == {
        "r": 16,
        "lora_alpha": 32.0,
        "target_modules": ["q_proj", "v_proj"],
        "steps": 10,
    }
    assert shown["description"] == "clinic notes"
    code, out, _ = run("preset", "ls")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["small", "medium", "large", "xlarge", "clinical"]
    assert "built-in" in out.splitlines()[1]
    code, out, _ = run("preset", "ls", "--limit", "2", "--json")
    assert [p["name"] for p in json.loads(out)] == ["small", "medium"]
    code, out, _ = run("preset", "show", "large")
    assert out.startswith("large (built-in)") and "r: 16" in out
    code, _, err = run("preset", "save", "small", "--r", "2", "--alpha", "2")
    assert code != 0 and "read-only" in err
    code, _, err = run("preset", "save", "bad", "--r", "0", "--alpha", "2")
    assert code != 0 and "params.r = 0 is out of range" in err
    code, _, err = run("preset", "save", "bad", "--alpha", "2")
    assert code == 2 and "--r" in err
    code, out, _ = run("preset", "rm", "clinical")
    assert code == 0 and "deleted" in out
    code, _, err = run("preset", "show", "clinical")
    assert code != 0 and "not found" in err
