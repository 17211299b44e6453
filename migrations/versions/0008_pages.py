"""keyset indexes of the paginated lists: adapters by update time, jobs by creation

``GET /v1/adapters?sort=updated`` pages by ``(updated_at, id)`` (with or without a
namespace) and ``GET /v1/jobs`` by ``(created_at, id)``: each page is one range scan
of these indexes whatever its depth (registry.services.pagination).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_adapters_updated_at_id", "adapters", ["updated_at", "id"], unique=False)
    op.create_index(
        "ix_adapters_namespace_id_updated_at_id",
        "adapters",
        ["namespace_id", "updated_at", "id"],
        unique=False,
    )
    op.create_index("ix_jobs_created_at_id", "jobs", ["created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_created_at_id", table_name="jobs")
    op.drop_index("ix_adapters_namespace_id_updated_at_id", table_name="adapters")
    op.drop_index("ix_adapters_updated_at_id", table_name="adapters")
