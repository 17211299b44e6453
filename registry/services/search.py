"""``GET /v1/search``: text and filters over the search documents, one page at a time.

One SELECT on ``search_documents`` (:mod:`registry.services.search_index` keeps them):

* the text query ``q`` is cut into words exactly as documents are
  (:func:`~registry.services.search_index.words`); every word must occur in the name,
  tags, description or card text, as a word or a word's beginning (``med`` finds
  ``medical``). Whatever else ``q`` holds (quotes, ``*``, ``:``, ``&``, parentheses,
  NUL) is a separator, never query syntax: the engine's query is built from the words
  alone (a tsquery of quoted lexemes on Postgres, quoted FTS5 phrases on SQLite);
* relevance depends on the document only, never on the rest of the catalog (no
  corpus statistics), so private documents do not sway public scores and pages stay
  put while others publish: Postgres ``ts_rank`` over weighted fields (name A, tags B,
  description C, card D); SQLite 8·name + 4·tags + 2·description + 1·card, each term
  1 when every word occurs in that field;
* private namespaces the caller cannot read are excluded in the WHERE clause (the
  caller's readable namespaces are a parameter), never after the fetch;
* pages are keyset pages (:mod:`registry.services.pagination`): relevance is
  ``(score desc, adapter id)``, created ``(created_at desc, id desc)``, name
  ``(name, id)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from loreg.refs import format_ref
from loreg.vocabulary import ArtifactKind, Scope, SearchSort
from registry.auth import ALL_NAMESPACES, Principal
from registry.errors import InvalidRequest
from registry.models import Namespace, SearchDocument, SearchDocumentTag
from registry.services import catalog
from registry.services.pagination import Page, PageRequest, SortKey, paginate
from registry.services.search_index import MAX_TAG_LENGTH, normalize_tag, words
from registry.validation.peft_config import TASK_TYPES

#: Most words of ``q`` used (the rest are ignored), and most tags one query filters on.
MAX_QUERY_WORDS = 16
MAX_FILTER_TAGS = 16
#: The longest ``q`` accepted (characters).
MAX_QUERY_CHARS = 512
#: Kinds a search can be limited to (base models are not adapters: GET /v1/base-models).
SEARCHABLE_KINDS = tuple(k for k in ArtifactKind if k != ArtifactKind.BASE_MODEL)
#: SQLite field weights (FTS5 column, weight) of the relevance score.
_SQLITE_WEIGHTS = (("name", 8), ("tags", 4), ("description", 2), ("card", 1))
_PEFT_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


@dataclass(frozen=True)
class SearchQuery:
    """The checked filters and sort of one search (see :func:`build_query`)."""

    q: str | None = None
    namespace: str | None = None
    base_model: str | None = None
    task_type: str | None = None
    tags: tuple[str, ...] = ()
    rank_min: int | None = None
    rank_max: int | None = None
    peft_type: str | None = None
    kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    has_alias: bool | None = None
    yanked: bool = False
    sort: SearchSort | None = None

    @property
    def terms(self) -> list[str]:
        """The words of ``q`` searched for (at most :data:`MAX_QUERY_WORDS`)."""
        return list(dict.fromkeys(words(self.q)))[:MAX_QUERY_WORDS]

    @property
    def order(self) -> SearchSort:
        """The sort in effect: as asked, else relevance with ``q`` and created without."""
        if self.sort is not None:
            return self.sort
        return SearchSort.RELEVANCE if self.q is not None else SearchSort.CREATED

    def scope(self) -> str:
        """The cursor scope: every filter and the sort (a cursor continues only this)."""
        shape = {k: v for k, v in asdict(self).items() if k != "q"}
        shape["terms"] = self.terms
        shape["sort"] = str(self.order)
        return "search:" + json.dumps(shape, sort_keys=True, default=str)


#: Every query parameter ``GET /v1/search`` accepts.
ACCEPTED_PARAMETERS: tuple[str, ...] = (*(f.name for f in fields(SearchQuery)), "limit", "cursor")


def check_parameters(names: list[str]) -> None:
    """422 naming any query parameter search does not know (a mistyped filter is not
    silently ignored), with the accepted ones."""
    unknown = sorted(set(names) - set(ACCEPTED_PARAMETERS))
    if unknown:
        accepted = ", ".join(ACCEPTED_PARAMETERS)
        raise InvalidRequest(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}: search accepts {accepted}",
            details={"unknown": unknown, "accepted": list(ACCEPTED_PARAMETERS)},
        )


def _as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive one (SQLite hands them back so) is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else _as_utc(value)


def parse_tags(values: list[str]) -> tuple[str, ...]:
    """The tags of the ``tags`` filter: repeated parameters and comma lists, normalized
    as documents store them; 422 for an empty or over-long tag or too many tags."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            tag = normalize_tag(part)
            if tag is None:
                raise InvalidRequest(
                    f"tag {part.strip()[:80]!r} is empty or longer than {MAX_TAG_LENGTH} "
                    "characters: pass tags=a,b or tags=a&tags=b"
                )
            out.append(tag)
    unique = tuple(dict.fromkeys(out))
    if len(unique) > MAX_FILTER_TAGS:
        raise InvalidRequest(f"at most {MAX_FILTER_TAGS} tags per search (got {len(unique)})")
    return unique


def _checked_choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise InvalidRequest(f"unknown {what} {value[:80]!r}: use one of {', '.join(allowed)}")
    return value


def build_query(
    *,
    q: str | None = None,
    namespace: str | None = None,
    base_model: str | None = None,
    task_type: str | None = None,
    tags: list[str] | None = None,
    rank_min: int | None = None,
    rank_max: int | None = None,
    peft_type: str | None = None,
    kind: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    has_alias: bool | None = None,
    yanked: bool = False,
    sort: SearchSort | None = None,
) -> SearchQuery:
    """Check the parameters of a search; 422 (``invalid_request`` or ``invalid_name``)
    naming the first problem."""
    if q is not None and not q.strip():
        q = None
    if q is not None and not words(q):
        raise InvalidRequest(
            f"q {q[:80]!r} has no letters or digits to search for: search words, "
            "e.g. q=medical llama"
        )
    if sort == SearchSort.RELEVANCE and q is None:
        raise InvalidRequest("sort=relevance needs a text query q; use sort=created or name")
    if rank_min is not None and rank_max is not None and rank_min > rank_max:
        raise InvalidRequest(f"rank_min ({rank_min}) is greater than rank_max ({rank_max})")
    after, before = _utc(created_after), _utc(created_before)
    if after is not None and before is not None and after >= before:
        raise InvalidRequest(
            f"created_after ({after.isoformat()}) is not before created_before "
            f"({before.isoformat()})"
        )
    if peft_type is not None and not _PEFT_TYPE.fullmatch(peft_type.upper()):
        raise InvalidRequest(f"invalid peft_type {peft_type[:80]!r}: e.g. LORA")
    return SearchQuery(
        q=q,
        namespace=catalog.checked_name(namespace, "namespace") if namespace else None,
        base_model=catalog.checked_base_model_name(base_model) if base_model else None,
        task_type=_checked_choice(
            task_type.upper() if task_type else None, TASK_TYPES, "task_type"
        ),
        tags=parse_tags(tags or []),
        rank_min=rank_min,
        rank_max=rank_max,
        peft_type=peft_type.upper() if peft_type else None,
        kind=_checked_choice(kind, tuple(SEARCHABLE_KINDS), "kind"),
        created_after=after,
        created_before=before,
        has_alias=has_alias,
        yanked=yanked,
        sort=sort,
    )


# --------------------------------------------------------------------------- SQL


def readable_filter(principal: Principal) -> ColumnElement[bool] | None:
    """Documents the caller may see: public namespaces and the private ones it can read
    (None: it reads every namespace)."""
    if principal.can(ALL_NAMESPACES, Scope.READ):
        return None
    readable = sorted(ns for ns in principal.grants if principal.can(ns, Scope.READ))
    visible = select(Namespace.id).where(
        sa.or_(col(Namespace.private).is_(False), col(Namespace.name).in_(readable))
        if readable
        else col(Namespace.private).is_(False)
    )
    return col(SearchDocument.namespace_id).in_(visible)


_FTS = sa.table("search_fts", sa.column("rowid"), sa.column("search_fts"))


def _fts_match(expression: str) -> ColumnElement[bool]:
    return _FTS.c.search_fts.op("MATCH")(sa.bindparam(None, expression, type_=sa.Text))


def _text_sqlite(terms: list[str]) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """(match, score) on SQLite: the FTS5 table, queried with quoted prefix phrases."""
    phrase = " ".join(f'"{t}"*' for t in terms)  # words hold no quote: nothing to escape
    match = col(SearchDocument.adapter_id).in_(select(_FTS.c.rowid).where(_fts_match(phrase)))
    parts = [
        sa.case(
            (
                sa.exists()
                .where(_FTS.c.rowid == SearchDocument.adapter_id)
                .where(_fts_match(f"{{{field}}} : ({phrase})")),
                weight,
            ),
            else_=0,
        )
        for field, weight in _SQLITE_WEIGHTS
    ]
    return match, sa.cast(sum(parts[1:], parts[0]), sa.Float)


def _text_postgres(terms: list[str]) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """(match, score) on Postgres: the GIN-indexed tsvector against a tsquery of quoted
    prefix lexemes (built directly, no parser: the words are the lexemes)."""
    vector = sa.literal_column("search_documents.search_vector", type_=postgresql.TSVECTOR)
    text = " & ".join(f"'{t}':*" for t in terms)  # words hold no quote: nothing to escape
    tsquery = sa.cast(sa.bindparam(None, text, type_=sa.Text), postgresql.TSQUERY)
    # ts_rank is a float4; as float8 it round-trips exactly through the cursor (the
    # driver prints a float4 rounded, which the next page's comparison would miss)
    score = sa.cast(sa.func.ts_rank(vector, tsquery), postgresql.DOUBLE_PRECISION)
    return vector.op("@@")(tsquery), score


def _conditions(query: SearchQuery, principal: Principal) -> list[ColumnElement[bool]]:
    doc = SearchDocument
    out: list[ColumnElement[bool]] = [col(doc.yanked).is_(query.yanked)]
    visible = readable_filter(principal)
    if visible is not None:
        out.append(visible)
    equal = {
        doc.namespace: query.namespace,
        doc.base_model: query.base_model,
        doc.task_type: query.task_type,
        doc.peft_type: query.peft_type,
        doc.kind: query.kind,
    }
    out.extend(col(c) == v for c, v in equal.items() if v is not None)
    if query.rank_min is not None:
        out.append(col(doc.rank) >= query.rank_min)
    if query.rank_max is not None:
        out.append(col(doc.rank) <= query.rank_max)
    if query.created_after is not None:
        out.append(col(doc.created_at) >= query.created_after)
    if query.created_before is not None:
        out.append(col(doc.created_at) < query.created_before)
    if query.has_alias is not None:
        out.append(col(doc.has_alias).is_(query.has_alias))
    for tag in query.tags:
        tagged = select(SearchDocumentTag.adapter_id).where(SearchDocumentTag.tag == tag)
        out.append(col(doc.adapter_id).in_(tagged))
    return out


def _sort_keys(order: SearchSort, score: ColumnElement[Any]) -> list[SortKey]:
    doc_id = col(SearchDocument.adapter_id)
    if order == SearchSort.RELEVANCE:
        return [SortKey(score, descending=True), SortKey(doc_id)]
    if order == SearchSort.NAME:
        return [SortKey(col(SearchDocument.name)), SortKey(doc_id)]
    return [
        SortKey(col(SearchDocument.created_at), descending=True),
        SortKey(doc_id, descending=True),
    ]


def _hit(row: Any) -> dict[str, Any]:
    doc, score = row
    return {
        "namespace": doc.namespace,
        "name": doc.name,
        "ref": format_ref(doc.namespace, doc.name, version=doc.version),
        "kind": doc.kind,
        "description": doc.description,
        "base_model": doc.base_model,
        "task_type": doc.task_type,
        "peft_type": doc.peft_type,
        "rank": doc.rank,
        "tags": list(doc.tags or []),
        "version": doc.version,
        "versions": doc.versions,
        "has_alias": doc.has_alias,
        "yanked": doc.yanked,
        "created_at": _as_utc(doc.created_at).isoformat(),
        "updated_at": _as_utc(doc.updated_at).isoformat(),
        "score": None if score is None else float(score),
    }


def search(
    session: Session, principal: Principal, query: SearchQuery, page: PageRequest
) -> Page[dict[str, Any]]:
    """One page of the adapters matching ``query`` that the caller may see."""
    conditions = _conditions(query, principal)
    score: ColumnElement[Any] = sa.null()
    terms = query.terms
    if terms:
        text = _text_postgres if session.get_bind().dialect.name == "postgresql" else _text_sqlite
        match, score = text(terms)
        conditions.append(match)
    order = query.order
    keys = _sort_keys(order, score)
    statement = select(SearchDocument, score.label("score")).where(*conditions)

    def key_of(row: Any) -> list[Any]:
        doc, row_score = row
        if order == SearchSort.RELEVANCE:
            return [float(row_score), doc.adapter_id]
        if order == SearchSort.NAME:
            return [doc.name, doc.adapter_id]
        return [doc.created_at, doc.adapter_id]

    return paginate(session, statement, keys, page, query.scope(), key_of, _hit)
