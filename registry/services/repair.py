"""Stored JSON values that break today's bounds: rendered safely, and repaired on request.

Before publish bounded every JSON value (``registry.validation.json_values``),
a config or metadata nested 254+ levels deep could be written; every resolve
of such a version then failed to serialise (a 500, forever). Reads pass stored
values through :func:`render`, which leaves a valid value untouched and
replaces what breaks the bounds; :func:`repair_stored_json` (admin:
``POST /v1/admin/repair-json``) rewrites such rows once, so nothing needs a
schema migration.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from sqlmodel import Session, select

from registry.models import BaseModelRecord, LineageEdge, Version
from registry.services.context import Context
from registry.validation.json_values import bounded_copy, json_problem


class _JsonRow(Protocol):
    """A table row whose JSON columns are read and written by name."""

    __tablename__: ClassVar[str]
    id: int | None


#: Stored JSON columns, by model: what render/repair look at.
_COLUMNS: tuple[tuple[type[_JsonRow], tuple[str, ...]], ...] = (
    (Version, ("config", "meta", "summary")),
    (LineageEdge, ("params",)),
    (BaseModelRecord, ("config", "meta")),
)


def render(value: Any) -> Any:
    """``value`` itself when it is within the bounds, else a bounded copy (never raises)."""
    if value is None or json_problem(value) is None:
        return value
    return bounded_copy(value)


def repair_stored_json(ctx: Context) -> dict[str, Any]:
    """Rewrite every stored JSON value that breaks the bounds with its bounded copy.

    Returns ``{"repaired": ["versions.config id=3: <problem>", ...]}``. Idempotent.
    """
    repaired: list[str] = []
    with Session(ctx.engine) as session:
        for model, columns in _COLUMNS:
            for row in session.exec(select(model)).all():
                for column in columns:
                    value = getattr(row, column)
                    problem = None if value is None else json_problem(value)
                    if problem is not None:
                        setattr(row, column, bounded_copy(value))
                        session.add(row)
                        repaired.append(f"{model.__tablename__}.{column} id={row.id}: {problem}")
        session.commit()
    return {"repaired": repaired}
