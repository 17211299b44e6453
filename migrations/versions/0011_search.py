"""search: one search document per adapter, its tags, and the engine's text index

``search_documents`` and ``search_document_tags`` are ordinary tables (models.py).
The text index is engine-specific and not part of the models (migrations/env.py
leaves these objects out of the comparison, see registry.models.SEARCH_FTS_OBJECTS):

* Postgres: a ``search_vector`` tsvector column with a GIN index;
* SQLite: the ``search_fts`` FTS5 table (rowid = adapter id) and a trigger that
  drops its row with the document.

Existing adapters get their documents when the server starts
(registry.services.search_index.backfill, run by ``loreg serve``): building them
needs the application's reading of configs and metadata, which a migration should
not freeze.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 21:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate emits sqlmodel.sql.sqltypes.AutoString)
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FTS5 = (
    "CREATE VIRTUAL TABLE search_fts USING fts5("
    "name, tags, description, card, tokenize = 'unicode61 remove_diacritics 0')"
)
_FTS5_DELETE_TRIGGER = (
    "CREATE TRIGGER search_documents_fts_delete AFTER DELETE ON search_documents "
    "BEGIN DELETE FROM search_fts WHERE rowid = old.adapter_id; END"
)


def upgrade() -> None:
    op.create_table(
        "search_documents",
        sa.Column("adapter_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("namespace", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=True),
        sa.Column("base_model", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column("task_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("peft_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("card_text", sa.Text(), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("versions", sa.Integer(), nullable=False),
        sa.Column("has_alias", sa.Boolean(), nullable=False),
        sa.Column("yanked", sa.Boolean(), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["adapter_id"], ["adapters.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["namespace_id"], ["namespaces.id"]),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("adapter_id"),
    )
    with op.batch_alter_table("search_documents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_documents_base_model_created", ["base_model", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_search_documents_created_id", ["created_at", "adapter_id"], unique=False
        )
        batch_op.create_index("ix_search_documents_name_id", ["name", "adapter_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_search_documents_namespace_id"), ["namespace_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_search_documents_rank"), ["rank"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_search_documents_task_type"), ["task_type"], unique=False
        )

    op.create_table(
        "search_document_tags",
        sa.Column("adapter_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tag", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["search_documents.adapter_id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("adapter_id", "tag"),
    )
    with op.batch_alter_table("search_document_tags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_document_tags_tag_adapter", ["tag", "adapter_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE search_documents ADD COLUMN search_vector tsvector")
        op.execute(
            "CREATE INDEX ix_search_documents_search_vector ON search_documents "
            "USING gin (search_vector) WITH (fastupdate = off)"
        )
    else:
        op.execute(_FTS5)
        op.execute(_FTS5_DELETE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS search_documents_fts_delete")
        op.execute("DROP TABLE IF EXISTS search_fts")
    with op.batch_alter_table("search_document_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_search_document_tags_tag_adapter")
    op.drop_table("search_document_tags")
    with op.batch_alter_table("search_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_search_documents_task_type"))
        batch_op.drop_index(batch_op.f("ix_search_documents_rank"))
        batch_op.drop_index(batch_op.f("ix_search_documents_namespace_id"))
        batch_op.drop_index("ix_search_documents_name_id")
        batch_op.drop_index("ix_search_documents_created_id")
        batch_op.drop_index("ix_search_documents_base_model_created")
    op.drop_table("search_documents")
