"""yank, deprecate, delete: versions.yanked_*, adapters.deprecated_*, blobs.unreferenced_since

A yanked version is skipped by latest; the partial index on the unyanked versions
keeps "the newest unyanked version" one backward index step (docs/design.md §14).
A deleted version's blobs get ``unreferenced_since``, from which gc counts its grace.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate emits sqlmodel.sql.sqltypes.AutoString)
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNYANKED = sa.text("yanked_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("yanked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("yanked_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.add_column(
            sa.Column("yank_reason", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True)
        )
        batch_op.create_index(
            "ix_versions_unyanked_number",
            ["adapter_id", "number"],
            unique=False,
            postgresql_where=_UNYANKED,
            sqlite_where=_UNYANKED,
        )
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "deprecated_message", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "deprecated_successor", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("deprecated_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )
        batch_op.add_column(sa.Column("deprecated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unreferenced_since", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.drop_column("unreferenced_since")
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.drop_column("deprecated_at")
        batch_op.drop_column("deprecated_by")
        batch_op.drop_column("deprecated_successor")
        batch_op.drop_column("deprecated_message")
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_index("ix_versions_unyanked_number")
        batch_op.drop_column("yank_reason")
        batch_op.drop_column("yanked_by")
        batch_op.drop_column("yanked_at")
