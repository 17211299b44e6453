"""Job result cards carry Hub-style metadata (workers.jobs.common.write_card)."""

from __future__ import annotations

import json
from pathlib import Path

from registry.modelcard import parse_card
from workers.jobs.common import ADAPTER_CONFIG, write_card

CARD = {
    "title": "combine of 2 adapters",
    "type": "combine",
    "method": "ties",
    "parents": [{"ref": "acme/a-v1", "weight": 0.7}, {"ref": "acme/b-v2", "weight": 0.3}],
}


def test_adapter_card_names_base_model_library_tags_and_lineage(tmp_path: Path) -> None:
    (tmp_path / ADAPTER_CONFIG).write_text(json.dumps({"base_model_name_or_path": "tiny-llama"}))
    write_card(tmp_path, CARD)
    card = parse_card((tmp_path / "README.md").read_text())
    assert card.metadata == {
        "base_model": "tiny-llama",
        "library_name": "peft",
        "tags": ["lora", "loreg", "combine", "ties"],
        "loreg": {"job": "combine", "parents": CARD["parents"]},
    }
    assert card.body.startswith("# combine of 2 adapters\n")
    assert "- parent: `acme/a-v1` (weight 0.7)" in card.body
    body_json = card.body.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(body_json) == CARD  # the full card, as before


def test_merged_model_card_is_a_transformers_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    write_card(tmp_path, {"title": "merge", "type": "merge", "base_model": "tiny-llama"})
    meta = parse_card((tmp_path / "README.md").read_text()).metadata
    assert meta["base_model"] == "tiny-llama"
    assert meta["library_name"] == "transformers"
    assert meta["tags"] == ["lora", "loreg", "merge"]
