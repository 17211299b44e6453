"""version_cards: a computed card for every version (issue 13 part 3)

One row per version: status pending|ready|failed, the card JSON computed by the
``card`` job, the version's README text (bounded), the error of a failed card and
the job that owns the row. Versions published before this migration get their rows
from the back-fill (docs/design.md, Cards), not from here.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate emits sqlmodel.sql.sqltypes.AutoString)
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "version_cards",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("card", sa.JSON(), nullable=True),
        sa.Column("readme", sa.Text(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("version_id"),
    )
    with op.batch_alter_table("version_cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_version_cards_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("version_cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_version_cards_status"))
    op.drop_table("version_cards")
