"""``loreg show`` prints a version's card; ``loreg admin cards --backfill`` runs every batch."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from loreg import cli
from tests.support.fake_registry import FakeRegistry, make_adapter_dir, make_registry

READY = {
    "card_status": "ready",
    "card": {
        "parameter_count": 512,
        "lora_parameter_count": 512,
        "ranks": [2, 4],
        "dtypes": ["F32"],
        "use_rslora": True,
        "frobenius_norm": 1.23456789,
        "modules": [
            {
                "name": "model.layers.0.self_attn.q_proj",
                "rank": 4,
                "alpha": 8.0,
                "scaling": 4.0,
                "frobenius_norm": 0.5,
                "effective_rank": 3.2,
                "energy_top_k": {"1": 0.61},
            }
        ],
    },
    "readme": "# hello\n",
    "error": None,
}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOREG_OFFLINE", "LOREG_DEBUG", "LOREG_TOKEN", "LOREG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOREG_RETRIES", "1")


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def run(fake: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    def factory(args):
        return make_registry(fake, tmp_path / "cache")

    def runner(*argv: str) -> tuple[int, str]:
        code = cli.main(list(argv), registry_factory=factory)
        return code, capsys.readouterr().out

    return runner


def test_show_prints_the_card_status_and_figures(run, fake, tmp_path) -> None:
    assert run("push", str(make_adapter_dir(tmp_path / "a")), "--name", "medical")[0] == 0
    code, out = run("show", "medical-v1")
    assert code == 0 and "card: pending" in out
    fake.cards[("default", "medical", 1)] = READY
    code, out = run("show", "medical-v1")
    assert code == 0 and "card: ready" in out
    assert "ranks: 2, 4" in out and "frobenius norm: 1.235" in out and "use rslora: True" in out
    assert "layers.0.self_attn.q_proj" not in out  # modules only with --modules
    code, out = run("show", "medical-v1", "--modules")
    assert "model.layers.0.self_attn.q_proj" in out and "0.61" in out and "EFF RANK" in out
    code, out = run("show", "medical-v1", "--json")
    assert json.loads(out)["card"]["card_status"] == "ready"


def test_show_prints_why_a_card_failed(run, fake, tmp_path) -> None:
    run("push", str(make_adapter_dir(tmp_path / "a")), "--name", "medical")
    fake.cards[("default", "medical", 1)] = {
        "card_status": "failed",
        "card": None,
        "readme": None,
        "error": "a file of the version is missing from the store",
    }
    code, out = run("show", "medical-v1")
    assert code == 0 and "card: failed" in out and "missing from the store" in out


def test_admin_cards_backfill_runs_batches_until_none_is_left(run, fake) -> None:
    fake.backfills = [
        {"submitted": 2, "remaining": 3},
        {"submitted": 2, "remaining": 1},
        {"submitted": 1, "remaining": 0},
        {"submitted": 99, "remaining": 99},  # never asked for
    ]
    code, out = run("admin", "cards", "--backfill", "--limit", "2", "--json")
    assert code == 0 and json.loads(out) == {"submitted": 5, "remaining": 0}
    asked = [httpx.URL(s.url) for s in fake.seen if "/v1/admin/cards/backfill" in s.url]
    assert len(asked) == 3
    assert all(u.params.get("limit") == "2" for u in asked)
    assert all(u.params.get("retry_failed") == "false" for u in asked)
    assert len(fake.backfills) == 1
