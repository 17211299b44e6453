"""Keyset (cursor) pagination for every list the API serves.

A list is ordered by a few sort keys whose last one is unique (usually the row id),
so "the rows after this one" is one indexed range condition, whatever the depth:
no ``OFFSET``, no count. The cursor handed back as ``next_cursor`` holds the sort
keys of the last row of the page, the name of the query it belongs to, and an HMAC
(the server's ``secret_key``), so:

* a cursor edited by hand, truncated or made by another server is refused
  (400 ``invalid_cursor``) instead of silently starting somewhere else;
* a cursor of one query (adapters sorted by name in ``default``) used with another
  (jobs, another filter, another sort) is refused the same way;
* rows published while a client pages never make it skip or repeat a row: each page
  starts strictly after the keys of the previous page's last row.

Routes take a :class:`PageRequest` (``limit``, ``cursor``) from the query string
(``registry.api.deps.PageDep``); services call :func:`paginate` with their filtered
statement and answer a :class:`Page`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from registry.errors import InvalidCursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_FORMAT = 1
_MAC_BYTES = 16
_MAX_CURSOR_CHARS = 2048

T = TypeVar("T")
KeyValue = int | str | float | datetime | None


@dataclass(frozen=True)
class SortKey:
    """One column of a list's order; the last key of a list must be unique."""

    column: Any
    descending: bool = False


@dataclass(frozen=True)
class PageRequest:
    """What the caller asked for: at most ``limit`` rows after ``cursor``."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    secret: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


@dataclass
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None on the last page)."""

    items: list[T]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape every list answers: ``{"items": [...], "next_cursor": ...}``."""
        return {"items": self.items, "next_cursor": self.next_cursor}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scope_id(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def _mac(secret: str, body: str) -> str:
    digest = hmac.new(secret.encode(), b"loreg-cursor\n" + body.encode(), hashlib.sha256)
    return _b64(digest.digest()[:_MAC_BYTES])


def _encode_value(value: KeyValue) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if value is None or isinstance(value, int | str | float):
        return value
    raise TypeError(f"a sort key of type {type(value).__name__} cannot go into a cursor")


def _decode_value(value: Any) -> KeyValue:
    if isinstance(value, dict) and set(value) == {"t"} and isinstance(value["t"], str):
        return datetime.fromisoformat(value["t"])
    if value is None or isinstance(value, int | str | float):
        return value
    raise InvalidCursor("cursor is malformed: pass back next_cursor exactly as it came")


def encode_cursor(secret: str, scope: str, keys: Sequence[KeyValue]) -> str:
    """The opaque cursor that continues ``scope`` after a row with sort ``keys``."""
    payload = {"v": _FORMAT, "s": _scope_id(scope), "k": [_encode_value(k) for k in keys]}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, body)}"


def decode_cursor(secret: str, scope: str, cursor: str, key_count: int) -> list[KeyValue]:
    """The sort keys a cursor continues after; 400 ``invalid_cursor`` if it was not
    made by this server for this very query (same list, filters and sort)."""
    retry = "start again without a cursor"
    if len(cursor) > _MAX_CURSOR_CHARS or cursor.count(".") != 1:
        raise InvalidCursor(f"cursor is malformed: pass back next_cursor exactly, or {retry}")
    body, mac = cursor.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(secret, body).encode()):
        raise InvalidCursor(f"cursor was altered or made by another server: {retry}")
    try:
        payload = json.loads(_unb64(body))
    except ValueError as exc:  # a valid MAC over bytes we never wrote: another format
        raise InvalidCursor(f"cursor is malformed: {retry}") from exc
    if not isinstance(payload, dict) or payload.get("v") != _FORMAT:
        raise InvalidCursor(f"cursor is from another version of the server: {retry}")
    if payload.get("s") != _scope_id(scope):
        raise InvalidCursor(
            "cursor belongs to another query (another list, filter or sort): pass the "
            f"same query parameters as the request that returned it, or {retry}"
        )
    keys = payload.get("k")
    if not isinstance(keys, list) or len(keys) != key_count:
        raise InvalidCursor(f"cursor is malformed: {retry}")
    return [_decode_value(k) for k in keys]


def after(keys: Sequence[SortKey], values: Sequence[KeyValue]) -> ColumnElement[bool]:
    """The condition "strictly after ``values`` in the order of ``keys``".

    All keys in one direction become one row-value comparison (``(a, b) > (x, y)``,
    which Postgres and SQLite both answer with one index range scan); mixed
    directions expand to ``a > x OR (a = x AND b < y) ...``. Either way the first key
    is also bounded on its own (``a >= x``), which the condition implies: a planner
    that cannot use the whole comparison as an index bound still starts its range
    at the cursor instead of at the top of the list.
    """
    if len(keys) != len(values) or not keys:
        raise ValueError("one value per sort key")
    first = keys[0].column
    leading = first <= values[0] if keys[0].descending else first >= values[0]
    if len(keys) == 1:
        return first < values[0] if keys[0].descending else first > values[0]
    if len({k.descending for k in keys}) == 1:
        left = sa.tuple_(*[k.column for k in keys])
        right = sa.tuple_(*[sa.literal(v) for v in values])
        return sa.and_(leading, left < right if keys[0].descending else left > right)
    clauses: list[ColumnElement[bool]] = []
    for i, key in enumerate(keys):
        equal = [keys[j].column == values[j] for j in range(i)]
        step = key.column < values[i] if key.descending else key.column > values[i]
        clauses.append(sa.and_(*equal, step))
    return sa.and_(leading, sa.or_(*clauses))


def order_by(keys: Sequence[SortKey]) -> list[Any]:
    """The ORDER BY clauses of ``keys``."""
    return [k.column.desc() if k.descending else k.column.asc() for k in keys]


def paginate(
    session: Session,
    statement: Any,
    keys: Sequence[SortKey],
    request: PageRequest,
    scope: str,
    key_of: Callable[[Any], Sequence[KeyValue]],
    render: Callable[[Any], T],
) -> Page[T]:
    """One page of ``statement`` (a filtered SELECT without ORDER BY or LIMIT).

    ``scope`` names the query and every filter and sort that shaped it (a cursor only
    continues the scope it came from); ``key_of(row)`` gives a row's sort keys in
    ``keys`` order; ``render(row)`` its JSON item. Fetches ``limit + 1`` rows to know
    whether another page exists.
    """
    if request.cursor:
        values = decode_cursor(request.secret, scope, request.cursor, len(keys))
        statement = statement.where(after(keys, values))
    rows = list(session.exec(statement.order_by(*order_by(keys)).limit(request.limit + 1)))
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    next_cursor = encode_cursor(request.secret, scope, key_of(rows[-1])) if more else None
    return Page([render(row) for row in rows], next_cursor)
