"""The search index: one :class:`~registry.models.SearchDocument` per adapter.

A document describes the adapter and its *current* version (the latest that is not
yanked) with the fields search filters on, and feeds the engine's text index:

* Postgres: ``search_documents.search_vector`` (tsvector, GIN index), set here from
  the words of the name (weight A), tags (B), description (C) and card text (D);
* SQLite: the ``search_fts`` FTS5 table (rowid = adapter id, one column per field).

Both engines index the same words, cut here by :func:`words` (runs of letters and
digits, lower-cased), so a query finds the same adapters on either.

Whatever changes an adapter calls :func:`refresh_adapter` in its own transaction
(publish, alias set/remove; yank, delete and card results too), so the index is
never behind the catalog. :func:`backfill` indexes adapters published before the
index existed (``loreg serve`` runs it on start).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from registry.models import (
    Adapter,
    Alias,
    Namespace,
    SearchDocument,
    SearchDocumentTag,
    Version,
)
from registry.services.card_status import card_text

#: Bumped when what a document holds changes: :func:`backfill` rewrites older ones.
DOCUMENT_FORMAT = 1
#: Longest word indexed or searched for (longer ones are cut).
MAX_WORD = 64
#: Tags kept per adapter, and the longest tag the ``tags`` filter knows.
MAX_TAGS = 64
MAX_TAG_LENGTH = 64
#: Characters of card text indexed (the start of the README).
MAX_CARD_CHARS = 65536

_WORD = re.compile(r"[^\W_]+")

#: The text fields and their Postgres weights, in FTS5 column order.
TEXT_FIELDS = (("name", "A"), ("tags", "B"), ("description", "C"), ("card", "D"))


def words(text: str | None) -> list[str]:
    """The words of ``text`` the index holds: runs of letters and digits, lower-cased,
    each at most :data:`MAX_WORD` characters (``"Llama-3.2_med"`` -> llama, 3, 2, med)."""
    if not text:
        return []
    return [w[:MAX_WORD] for w in _WORD.findall(text.lower())]


def normalize_tag(tag: str) -> str | None:
    """A tag as the ``tags`` filter compares it (stripped, lower-cased); None when empty
    or longer than :data:`MAX_TAG_LENGTH`."""
    tag = tag.strip().lower()
    return tag if 0 < len(tag) <= MAX_TAG_LENGTH else None


def _current_version(session: Session, adapter_id: int) -> tuple[Version | None, bool]:
    """The version a document describes and whether the adapter counts as yanked.

    The latest version not yanked; when every version is yanked, the latest one (and
    True).
    """
    latest = select(Version).where(Version.adapter_id == adapter_id)
    newest_first = col(Version.number).desc()
    unyanked = latest.where(col(Version.yanked_at).is_(None))
    live = session.exec(unyanked.order_by(newest_first)).first()
    if live is not None:
        return live, False
    return session.exec(latest.order_by(newest_first)).first(), True


def _card_text(session: Session, version: Version) -> str | None:
    """The card text of a version (facts and README), None while its card is not ready."""
    assert version.id is not None  # read from the database
    return card_text(session, version.id)


def tags_of(version: Version) -> list[str]:
    """The version's tags (``metadata.tags``, as the Hub card shows them)."""
    raw = (version.meta or {}).get("tags")
    if not isinstance(raw, list):
        return []
    return list(dict.fromkeys(t for t in raw if isinstance(t, str) and t.strip()))[:MAX_TAGS]


def _config_field(version: Version, key: str) -> Any:
    return (version.config or {}).get(key)


def _rank(version: Version) -> int | None:
    r = (version.summary or {}).get("r", _config_field(version, "r"))
    return r if isinstance(r, int) and not isinstance(r, bool) else None


def _text_or_none(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _document_values(
    session: Session, adapter: Adapter, ns: Namespace, version: Version, yanked: bool
) -> dict[str, Any]:
    """The columns of ``adapter``'s document, describing ``version``."""
    count, aliased = session.exec(
        select(
            func.count(col(Version.id)),
            select(Alias.id).where(Alias.adapter_id == adapter.id).exists().correlate(None),
        ).where(Version.adapter_id == adapter.id)
    ).one()
    card = _card_text(session, version)
    return {
        "adapter_id": adapter.id,
        "namespace_id": ns.id,
        "namespace": ns.name,
        "name": adapter.name,
        "kind": adapter.kind,
        "description": version.description or adapter.description,
        "base_model": version.base_model or adapter.base_model,
        "task_type": _text_or_none(_config_field(version, "task_type"), 64),
        "peft_type": _text_or_none(_config_field(version, "peft_type"), 64),
        "rank": _rank(version),
        "tags": tags_of(version),
        "card_text": card[:MAX_CARD_CHARS] if card else None,
        "version_id": version.id,
        "version": version.number,
        "versions": int(count),
        "has_alias": bool(aliased),
        "yanked": yanked,
        "format": DOCUMENT_FORMAT,
        "created_at": adapter.created_at,
        "updated_at": version.created_at,
    }


def _upsert(session: Session, values: dict[str, Any]) -> None:
    """Insert or replace the document row (one statement: concurrent refreshes of one
    adapter serialize on the row instead of failing)."""
    table = SearchDocument.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    changed = {k: v for k, v in values.items() if k != "adapter_id"}
    session.execute(
        insert.values(**values).on_conflict_do_update(index_elements=["adapter_id"], set_=changed)
    )


def _write_tags(session: Session, adapter_id: int, tags: list[str]) -> None:
    session.execute(
        sa.delete(SearchDocumentTag).where(col(SearchDocumentTag.adapter_id) == adapter_id)
    )
    normalized = dict.fromkeys(t for t in (normalize_tag(tag) for tag in tags) if t)
    for tag in normalized:
        session.add(SearchDocumentTag(adapter_id=adapter_id, tag=tag))


def _field_words(values: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "name": words(values["name"]),
        "tags": [w for tag in values["tags"] for w in words(tag)],
        "description": words(values["description"]),
        "card": words(values["card_text"]),
    }


#: Highest word position a Postgres tsvector holds (later words share it).
_MAX_POSITION = 16383


def tsvector_literal(fields: dict[str, list[str]]) -> str:
    """The Postgres tsvector of a document's words, written out (``'med':1A ...``): each
    word a quoted lexeme as :func:`words` cut it (no parser runs), with its position and
    its field's weight (:data:`TEXT_FIELDS`)."""
    out: list[str] = []
    position = 0
    for name, weight in TEXT_FIELDS:
        for word in fields[name]:  # letters and digits only: nothing to quote
            position = min(position + 1, _MAX_POSITION)
            out.append(f"'{word}':{position}{weight}")
    return " ".join(out)


def _write_text_index(session: Session, adapter_id: int, fields: dict[str, list[str]]) -> None:
    """Put the document's words into the engine's text index."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.text(
                "UPDATE search_documents SET search_vector = CAST(:vector AS tsvector) "
                "WHERE adapter_id = :id"
            ),
            {"id": adapter_id, "vector": tsvector_literal(fields)},
        )
        return
    session.execute(sa.text("DELETE FROM search_fts WHERE rowid = :id"), {"id": adapter_id})
    session.execute(
        sa.text(
            "INSERT INTO search_fts (rowid, name, tags, description, card) "
            "VALUES (:id, :name, :tags, :description, :card)"
        ),
        {"id": adapter_id, **{k: " ".join(v) for k, v in fields.items()}},
    )


def remove_adapter(session: Session, adapter_id: int) -> None:
    """Drop an adapter's document (and its tags and text index entry)."""
    session.execute(
        sa.delete(SearchDocumentTag).where(col(SearchDocumentTag.adapter_id) == adapter_id)
    )
    session.execute(sa.delete(SearchDocument).where(col(SearchDocument.adapter_id) == adapter_id))
    if session.get_bind().dialect.name != "postgresql":
        session.execute(sa.text("DELETE FROM search_fts WHERE rowid = :id"), {"id": adapter_id})


def refresh_adapter(session: Session, adapter_id: int) -> None:
    """Rewrite the search document of ``adapter_id`` from the catalog, in ``session``'s
    transaction; removes it when the adapter is gone or has no version.

    Call it after any change to an adapter, its versions or its aliases (pending
    changes are flushed first, so the document sees them).
    """
    session.flush()
    adapter = session.get(Adapter, adapter_id)
    version, yanked = _current_version(session, adapter_id) if adapter else (None, False)
    if adapter is None or version is None:
        remove_adapter(session, adapter_id)
        return
    ns = session.get(Namespace, adapter.namespace_id)
    assert ns is not None, "the namespace of an adapter"
    values = _document_values(session, adapter, ns, version, yanked)
    _upsert(session, values)
    _write_tags(session, adapter_id, values["tags"])
    _write_text_index(session, adapter_id, _field_words(values))
    session.flush()


def stale_adapter_ids(session: Session, limit: int) -> list[int]:
    """Up to ``limit`` adapters with a version whose document is missing or of an
    older :data:`DOCUMENT_FORMAT`."""
    has_version = select(Version.id).where(Version.adapter_id == Adapter.id).exists()
    rows = session.exec(
        select(Adapter.id)
        .outerjoin(SearchDocument, col(SearchDocument.adapter_id) == Adapter.id)
        .where(
            sa.or_(
                col(SearchDocument.adapter_id).is_(None),
                col(SearchDocument.format) < DOCUMENT_FORMAT,
            ),
            has_version,
        )
        .order_by(col(Adapter.id))
        .limit(limit)
    ).all()
    return [r for r in rows if r is not None]


def backfill(engine: sa.engine.Engine, batch: int = 200) -> int:
    """Index every adapter without a current document (published before search
    existed, or indexed under an older :data:`DOCUMENT_FORMAT`); returns how many.

    One transaction per ``batch`` adapters; cheap when nothing is stale (one indexed
    anti-join). Safe to run while serving: a refresh is idempotent.
    """
    done = 0
    while True:
        with Session(engine) as session:
            ids = stale_adapter_ids(session, batch)
            if not ids:
                return done
            for adapter_id in ids:
                refresh_adapter(session, adapter_id)
            session.commit()
            done += len(ids)
