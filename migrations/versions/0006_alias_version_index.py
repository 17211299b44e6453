"""aliases.version_id index: the aliases of a version in one index lookup

The resolve answer lists the aliases on the version it resolved; without this index
that lookup scanned the aliases table, the one resolve query that grew with the
registry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_aliases_version_id"), "aliases", ["version_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_aliases_version_id"), table_name="aliases")
