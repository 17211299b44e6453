"""Hub-style model cards: YAML metadata at the top of a version's ``README.md``.

The Hub reads a model card's metadata from a YAML block between two ``---`` lines at
the start of ``README.md`` (``base_model``, ``library_name``, ``tags``, ...). loreg
writes one into the cards it generates (job results, exports) so an exported
adapter looks right on the Hub, and reads one from imported cards to fill tags,
description and base model. Pure functions; PyYAML's safe loader with aliases
refused, and a bounded metadata block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

#: Largest YAML block read from a card (the Hub's own cards are a few hundred bytes).
MAX_METADATA_BYTES = 64 * 1024
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)
_HEADING = re.compile(r"^#{1,6}[ \t]+\S")


class CardMetadataError(ValueError):
    """The card's YAML metadata block does not parse, or is not a mapping."""


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors/aliases (no exponential expansion)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """PyYAML's hook for every node: refuse an alias before it is resolved."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not allowed in card metadata", event.start_mark
            )
        return super().compose_node(parent, index)


@dataclass(frozen=True)
class Card:
    """A model card split into its YAML metadata and its Markdown body."""

    metadata: dict[str, Any] = field(default_factory=dict)
    body: str = ""


def parse_card(text: str) -> Card:
    """Split ``README.md`` text into metadata and body (no block: empty metadata).

    Raises CardMetadataError for a block that is not valid YAML, not a mapping, or
    larger than :data:`MAX_METADATA_BYTES`.
    """
    match = _FRONT_MATTER.match(text)
    if match is None:
        return Card({}, text)
    block = match.group(1)
    if len(block.encode()) > MAX_METADATA_BYTES:
        raise CardMetadataError(
            f"the card's YAML metadata is {len(block.encode())} bytes; the limit is "
            f"{MAX_METADATA_BYTES}"
        )
    try:
        data = yaml.load(block, Loader=_NoAliasLoader) if block.strip() else {}
    except yaml.YAMLError as exc:
        raise CardMetadataError(f"the card's YAML metadata does not parse: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CardMetadataError(
            f"the card's YAML metadata must be a mapping (key: value), got {type(data).__name__}"
        )
    return Card(data, text[match.end() :])


def render_card(card: Card) -> str:
    """The ``README.md`` text of a card: the YAML block (if any metadata) then the body."""
    if not card.metadata:
        return card.body
    block = yaml.safe_dump(card.metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{block}---\n{card.body}"


def with_metadata(text: str, metadata: dict[str, Any]) -> str:
    """``text`` with ``metadata`` merged into its YAML block (given keys win; tags united)."""
    card = parse_card(text)
    merged = {**card.metadata, **metadata}
    old_tags, new_tags = card.metadata.get("tags"), metadata.get("tags")
    if isinstance(old_tags, list) and isinstance(new_tags, list):
        merged["tags"] = list(dict.fromkeys([*old_tags, *new_tags]))
    return render_card(Card(merged, card.body))


def hub_metadata(
    *,
    base_model: str | None,
    tags: list[str] | None = None,
    loreg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata loreg writes: ``base_model``, ``library_name: peft``, tags, lineage."""
    out: dict[str, Any] = {}
    if base_model:
        out["base_model"] = base_model
    out["library_name"] = "peft"
    out["tags"] = list(dict.fromkeys(["lora", "loreg", *(tags or [])]))
    if loreg:
        out["loreg"] = loreg
    return out


@dataclass(frozen=True)
class ImportedFacts:
    """What an imported card says about its adapter: tags, description, base model."""

    tags: list[str] = field(default_factory=list)
    description: str | None = None
    base_model: str | None = None


def imported_facts(text: str, *, max_description: int = 4096) -> ImportedFacts:
    """Tags, description (first paragraph of the body) and base model of a Hub card.

    ``base_model`` may be a string or a list on the Hub; the first string is taken.
    A card whose metadata does not parse yields only its description.
    """
    try:
        card = parse_card(text)
    except CardMetadataError:
        card = Card({}, _FRONT_MATTER.sub("", text, count=1))
    meta = card.metadata
    raw_tags = meta.get("tags")
    tags = [t for t in raw_tags if isinstance(t, str)] if isinstance(raw_tags, list) else []
    if isinstance(raw_tags, str):
        tags = [raw_tags]
    base = meta.get("base_model")
    if isinstance(base, list):
        base = next((b for b in base if isinstance(b, str)), None)
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        description = _first_paragraph(card.body)
    if description is not None:
        description = description.strip()[:max_description] or None
    return ImportedFacts(
        tags=tags, description=description, base_model=base if isinstance(base, str) else None
    )


def _first_paragraph(body: str) -> str | None:
    """The first non-heading paragraph of a Markdown body."""
    paragraph: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped:
            if paragraph:
                break
            continue
        if _HEADING.match(stripped) or stripped.startswith(("```", "<", "|", "![")):
            if paragraph:
                break
            continue
        paragraph.append(stripped)
    return " ".join(paragraph) or None
