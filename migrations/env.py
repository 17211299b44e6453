"""Alembic environment: runs the registry migrations on Postgres or SQLite."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import registry.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from registry.db import make_engine
from registry.models import SEARCH_FTS_OBJECTS
from registry.settings import Settings, normalize_database_url

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    """The database to migrate, with the driver chosen as for the server (``postgres://``)."""
    given = config.get_main_option("sqlalchemy.url")
    return normalize_database_url(given) if given else Settings.from_env().database_url


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave the engine-specific full-text objects of search (migration 0011: a
    tsvector column and its GIN index on Postgres, the FTS5 table and its shadow tables
    on SQLite) out of the model comparison: SQLModel cannot describe them on both."""
    del obj, type_, compare_to
    return not (reflected and name in SEARCH_FTS_OBJECTS)


def run_migrations_offline() -> None:
    """Emit SQL without a database connection (``alembic upgrade --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection (batch mode so ALTERs work on SQLite)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
