"""The Postgres plans of search use indexes: no sequential scan of versions, and none of
the document table for a selective query.

20,000 adapters (one namespace in ten private) with three versions each and their
search documents are bulk-inserted in SQL, shaped as refresh_adapter writes them (a
few real refreshes check the shape), then ANALYZEd; each search runs through the
service as an anonymous caller (so the private-namespace filter is in the SQL) and
the statements it sent are EXPLAINed with their parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from registry import migrate
from registry.auth import ANONYMOUS
from registry.db import make_engine
from registry.models import SearchDocument
from registry.services import search, search_index
from registry.services.pagination import PageRequest
from tests.support.servers import temp_pg_database

ADAPTERS = 20_000
SECRET = "plans"

_BULK = [
    "INSERT INTO namespaces (name, private, created_at) "
    "SELECT 'ns' || g, g % 10 = 0, now() FROM generate_series(0, 49) g",
    "INSERT INTO adapters (namespace_id, name, kind, description, base_model, created_at, "
    "updated_at) "
    "SELECT (SELECT id FROM namespaces WHERE name = 'ns' || (g % 50)), 'adapter-' || g, 'adapter', "
    "'adapter number ' || g, 'org/base-' || (g % 40), now() - g * interval '1 minute', now() "
    f"FROM generate_series(1, {ADAPTERS}) g",
    "INSERT INTO versions (adapter_id, number, digest, config, summary, meta, size, created_at) "
    "SELECT a.id, n, 'sha256:' || md5(a.id || '-' || n), "
    "json_build_object('r', 4 * (a.id % 4 + 1), 'task_type', 'CAUSAL_LM', 'peft_type', 'LORA'), "
    "json_build_object('r', 4 * (a.id % 4 + 1)), "
    "json_build_object('tags', json_build_array('lora', 'topic' || (a.id % 500))), 1000, now() "
    "FROM adapters a, generate_series(1, 3) n",
    "INSERT INTO search_documents (adapter_id, namespace_id, namespace, name, kind, description, "
    "base_model, task_type, peft_type, rank, tags, version_id, version, versions, has_alias, "
    "yanked, format, created_at, updated_at, search_vector) "
    "SELECT a.id, a.namespace_id, ns.name, a.name, 'adapter', a.description, a.base_model, "
    "'CAUSAL_LM', 'LORA', 4 * (a.id % 4 + 1), json_build_array('lora', 'topic' || (a.id % 500)), "
    "v.id, 3, 3, a.id % 7 = 0, false, 1, a.created_at, a.created_at, "
    "format('''adapter'':1A ''%s'':2A ''lora'':3B ''topic%s'':4B ''adapter'':5C ''number'':6C "
    "''%s'':7C', a.id, a.id % 500, a.id)::tsvector "
    "FROM adapters a JOIN namespaces ns ON ns.id = a.namespace_id "
    "JOIN versions v ON v.adapter_id = a.id AND v.number = 3",
    "INSERT INTO aliases (adapter_id, name, version_id, updated_at) "
    "SELECT adapter_id, 'prod', version_id, now() FROM search_documents WHERE has_alias",
    "INSERT INTO search_document_tags (adapter_id, tag) "
    "SELECT adapter_id, 'lora' FROM search_documents UNION ALL "
    "SELECT adapter_id, 'topic' || (adapter_id % 500) FROM search_documents",
]


@pytest.fixture(scope="module")
def engine() -> Iterator[sa.engine.Engine]:
    """A Postgres database with the bulk catalog, analyzed."""
    with temp_pg_database() as url:
        migrate.upgrade(url)
        eng = make_engine(url)
        with eng.begin() as conn:
            cursor = conn.connection.cursor()  # the driver's: '%' and ':' stay literal
            for statement in _BULK:
                cursor.execute(statement)
        with eng.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        try:
            yield eng
        finally:
            eng.dispose()


def test_the_bulk_rows_are_what_refresh_writes(engine):
    with Session(engine) as session:
        ids = [1, 10, 777]
        before = {i: _document(session, i) for i in ids}
        for adapter_id in ids:
            search_index.refresh_adapter(session, adapter_id)
        after = {i: _document(session, i) for i in ids}
        session.rollback()
    assert after == before


def _document(session: Session, adapter_id: int) -> dict[str, Any]:
    doc = session.get(SearchDocument, adapter_id)
    assert doc is not None
    session.expunge(doc)
    values = doc.model_dump(exclude={"updated_at"})
    vector = session.execute(
        sa.text("SELECT search_vector::text FROM search_documents WHERE adapter_id = :i"),
        {"i": adapter_id},
    ).scalar_one()
    return {**values, "vector": vector}


def plans_of(engine: sa.engine.Engine, query: search.SearchQuery, cursor: str | None = None):
    """Run the search as anonymous; the EXPLAIN of each statement it sent, and the page."""
    sent: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session:
            page = search.search(
                session, ANONYMOUS, query, PageRequest(limit=50, cursor=cursor, secret=SECRET)
            )
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    plans = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            if statement.lstrip().upper().startswith("SELECT"):
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
                plans.append("\n".join(r[0] for r in rows))
    assert plans, "the search sent no SELECT"
    return plans, page


SELECTIVE = [
    search.build_query(q="topic7", base_model="org/base-7"),
    search.build_query(q="topic123 adapter", tags=["topic123"], rank_min=8),
    search.build_query(q="adapter", tags=["topic9"], sort="name"),
    search.build_query(q="12345"),
    search.build_query(sort="created"),
    search.build_query(sort="name"),
    search.build_query(base_model="org/base-3", sort="created"),
    search.build_query(has_alias=True, sort="created"),
]


@pytest.mark.parametrize("query", SELECTIVE, ids=lambda q: q.scope()[7:90])
def test_selective_searches_use_indexes(engine, query):
    plans, page = plans_of(engine, query)
    assert page.items, "the search should find something"
    for plan in plans:
        assert "Seq Scan on versions" not in plan, plan
        assert "Seq Scan on search_documents" not in plan, plan
    # the next (deeper) page is a keyset range on the same indexes
    if page.next_cursor:
        deeper, _ = plans_of(engine, query, page.next_cursor)
        for plan in deeper:
            assert "Seq Scan on search_documents" not in plan, plan


def test_a_broad_text_search_still_never_scans_versions(engine):
    plans, page = plans_of(engine, search.build_query(q="lora", rank_min=4))
    assert len(page.items) == 50 and page.next_cursor
    for plan in plans:
        assert "Seq Scan on versions" not in plan, plan
        assert "search_documents" in plan
