"""Keyset cursors: tamper-proof, bound to their query, and pages that tile the order.

The page walk runs on an in-memory SQLite table against Python's own sort of the
same rows (every direction mix of two keys, with ties on the first key); the list
endpoints are tested on Postgres and SQLite in the integration suite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, create_engine

from registry.errors import InvalidCursor
from registry.services.pagination import (
    MAX_LIMIT,
    PageRequest,
    SortKey,
    decode_cursor,
    encode_cursor,
    paginate,
)

SECRET = "s" * 64
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_cursor_round_trips_ints_strings_and_times():
    keys = [3, "medical", T0 + timedelta(microseconds=7), None]
    cursor = encode_cursor(SECRET, "adapters|ns=default", keys)
    assert decode_cursor(SECRET, "adapters|ns=default", cursor, 4) == keys


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # MAC edited
        lambda c: ("x" if c[0] != "x" else "y") + c[1:],  # body edited
        lambda c: c.split(".")[0],  # MAC cut off
        lambda c: c + ".extra",
        lambda c: c[: len(c) // 2],
        lambda c: "",
    ],
)
def test_altered_cursor_is_refused(mangle):
    cursor = encode_cursor(SECRET, "jobs", [5])
    with pytest.raises(InvalidCursor, match="cursor"):
        decode_cursor(SECRET, "jobs", mangle(cursor), 1)


def test_cursor_of_another_server_is_refused():
    cursor = encode_cursor("another-secret", "jobs", [5])
    with pytest.raises(InvalidCursor, match="another server"):
        decode_cursor(SECRET, "jobs", cursor, 1)


def test_cursor_of_another_query_is_refused():
    cursor = encode_cursor(SECRET, "adapters|ns=default|sort=name", ["a", 1])
    with pytest.raises(InvalidCursor, match="another query"):
        decode_cursor(SECRET, "adapters|ns=team|sort=name", cursor, 2)


def test_limit_is_bounded():
    with pytest.raises(ValueError):
        PageRequest(limit=0)
    with pytest.raises(ValueError):
        PageRequest(limit=MAX_LIMIT + 1)


# A table of its own metadata: one on SQLModel.metadata would join the registry's
# schema for every later test (the migrations tests compare the two).
ROWS = sa.Table(
    "pagination_rows",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group", sa.Integer, nullable=False),
    sa.Column("name", sa.String, nullable=False),
)


class Row:
    """Column access by attribute, as the pages' keys read them."""

    id = ROWS.c.id
    group = ROWS.c.group


@pytest.fixture(scope="module")
def engine():
    eng = create_engine("sqlite://")
    ROWS.metadata.create_all(eng)
    yield eng
    eng.dispose()


def _fill(session: Session, names_and_groups: list[tuple[str, int]]) -> None:
    session.execute(sa.delete(ROWS))
    if names_and_groups:
        session.execute(sa.insert(ROWS), [{"name": n, "group": g} for n, g in names_and_groups])
    session.flush()


def _walk(session: Session, keys: list[SortKey], limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        page = paginate(
            session,
            sa.select(ROWS),
            keys,
            PageRequest(limit=limit, cursor=cursor, secret=SECRET),
            "rows",
            key_of=lambda r: [getattr(r, k.column.key) for k in keys],
            render=lambda r: r.id,
        )
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(st.integers(0, 3), min_size=0, max_size=30),
    group_desc=st.booleans(),
    id_desc=st.booleans(),
    limit=st.integers(1, 7),
)
def test_pages_tile_the_order_without_skip_or_repeat(engine, groups, group_desc, id_desc, limit):
    with Session(engine) as session:
        _fill(session, [(f"r{i}", g) for i, g in enumerate(groups)])
        rows = list(session.execute(sa.select(ROWS)))
        keys = [SortKey(Row.group, group_desc), SortKey(Row.id, id_desc)]
        expected = sorted(rows, key=lambda r: r.id * (-1 if id_desc else 1))
        expected.sort(key=lambda r: r.group * (-1 if group_desc else 1))
        assert _walk(session, keys, limit) == [r.id for r in expected]
        session.rollback()


def test_rows_added_while_paging_are_neither_skipped_nor_repeated(engine):
    with Session(engine) as session:
        _fill(session, [(f"r{i}", 0) for i in range(10)])
        keys = [SortKey(Row.id)]
        request = PageRequest(limit=4, secret=SECRET)
        page = paginate(
            session, sa.select(ROWS), keys, request, "rows", lambda r: [r.id], lambda r: r.id
        )
        session.execute(sa.insert(ROWS), [{"name": f"new{i}", "group": 0} for i in range(3)])
        session.flush()
        rest: list[int] = []
        cursor = page.next_cursor
        while cursor:
            nxt = paginate(
                session,
                sa.select(ROWS),
                keys,
                PageRequest(limit=4, cursor=cursor, secret=SECRET),
                "rows",
                lambda r: [r.id],
                lambda r: r.id,
            )
            rest.extend(nxt.items)
            cursor = nxt.next_cursor
        all_ids = [r.id for r in session.execute(sa.select(ROWS).order_by(ROWS.c.id))]
        assert page.items + rest == all_ids  # the 3 new rows come last, once each
        session.rollback()
