"""Model card metadata (registry.modelcard): parse, render, merge, import facts."""

from __future__ import annotations

import pytest

from registry.modelcard import (
    MAX_METADATA_BYTES,
    Card,
    CardMetadataError,
    hub_metadata,
    imported_facts,
    parse_card,
    render_card,
    with_metadata,
)

HUB_CARD = """---
base_model: meta-llama/Llama-3.2-1B
library_name: peft
tags:
- medical
- lora
license: apache-2.0
---

# Medical LoRA

A LoRA for clinical notes,
trained on synthetic data.

## Training
...
"""


def test_parse_splits_metadata_and_body() -> None:
    card = parse_card(HUB_CARD)
    assert card.metadata == {
        "base_model": "meta-llama/Llama-3.2-1B",
        "library_name": "peft",
        "tags": ["medical", "lora"],
        "license": "apache-2.0",
    }
    assert card.body.startswith("\n# Medical LoRA\n")
    assert "---" not in card.body


def test_no_block_is_all_body() -> None:
    text = "# Title\n\n---\nnot: metadata\n---\n"  # a rule later in the text is not a block
    card = parse_card(text)
    assert card == Card({}, text)


def test_render_round_trips() -> None:
    card = parse_card(HUB_CARD)
    again = parse_card(render_card(card))
    assert again == card
    assert render_card(Card({}, "body\n")) == "body\n"


def test_empty_block_and_crlf() -> None:
    assert parse_card("---\n---\nbody") == Card({}, "body")
    card = parse_card("---\r\nbase_model: x\r\n---\r\nbody\r\n")
    assert card.metadata == {"base_model": "x"} and card.body == "body\r\n"


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("a: [1, 2", "does not parse"),
        ("- a\n- b", "must be a mapping"),
        ("a: &x [1]\nb: *x", "aliases are not allowed"),
        ("a: !!python/object:os.system x", "does not parse"),
    ],
)
def test_bad_metadata_is_refused(block: str, problem: str) -> None:
    with pytest.raises(CardMetadataError, match=problem):
        parse_card(f"---\n{block}\n---\nbody")


def test_oversized_metadata_is_refused() -> None:
    block = "k: " + "x" * MAX_METADATA_BYTES
    with pytest.raises(CardMetadataError, match="the limit is"):
        parse_card(f"---\n{block}\n---\n")


def test_with_metadata_merges_and_unites_tags() -> None:
    out = parse_card(with_metadata(HUB_CARD, hub_metadata(base_model="tiny", tags=["combine"])))
    assert out.metadata["base_model"] == "tiny"  # given keys win
    assert out.metadata["license"] == "apache-2.0"  # others kept
    assert out.metadata["tags"] == ["medical", "lora", "loreg", "combine"]
    assert out.body == parse_card(HUB_CARD).body


def test_hub_metadata_shape() -> None:
    meta = hub_metadata(base_model=None, tags=["lora", "x"], loreg={"job": "combine"})
    assert meta == {
        "library_name": "peft",
        "tags": ["lora", "loreg", "x"],
        "loreg": {"job": "combine"},
    }


def test_imported_facts() -> None:
    facts = imported_facts(HUB_CARD)
    assert facts.tags == ["medical", "lora"]
    assert facts.base_model == "meta-llama/Llama-3.2-1B"
    assert facts.description == "A LoRA for clinical notes, trained on synthetic data."


def test_imported_facts_variants() -> None:
    listed = imported_facts("---\nbase_model:\n- org/a\n- org/b\ntags: one\n---\n")
    assert listed.base_model == "org/a" and listed.tags == ["one"] and listed.description is None
    declared = imported_facts("---\ndescription: Short.\n---\n# T\n\nLong body.\n")
    assert declared.description == "Short."
    broken = imported_facts("---\na: [\n---\nThe text.\n")  # bad YAML: description only
    assert broken.tags == [] and broken.base_model is None and broken.description == "The text."
    assert imported_facts("x" * 10, max_description=4).description == "xxxx"
