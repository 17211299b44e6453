"""lineage_edges.parent_base_model_id index: the downward lineage walk of a base model

``GET /v1/lineage/...?direction=down`` follows edges from parent to child; from a
version it uses ``ix_lineage_edges_parent_version_id``, from a base model (every
adapter trained against it, every merge of it) it needs this one, else each step of
the walk scans the whole edge table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_lineage_edges_parent_base_model_id"),
        "lineage_edges",
        ["parent_base_model_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_lineage_edges_parent_base_model_id"), table_name="lineage_edges")
