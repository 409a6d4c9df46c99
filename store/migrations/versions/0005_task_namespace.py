"""Tasks belong to a namespace, and listing reads one namespace's tasks by index.

Existing tasks were submitted before namespaces and belong to ``default``. The listing
indexes gain the namespace as their first column, so a page of one namespace is one index
range as before; the state index stays as it was for what looks at every namespace
(retention, the scheduler's reconciliation).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("namespace", sa.Text(), nullable=False, server_default="default")
    )
    op.drop_index("ix_tasks_create_time_id", table_name="tasks")
    op.drop_index("ix_tasks_type_create_time_id", table_name="tasks")
    op.create_index(
        "ix_tasks_namespace_create_time_id", "tasks", ["namespace", "create_time", "id"]
    )
    op.create_index(
        "ix_tasks_namespace_state_create_time_id",
        "tasks",
        ["namespace", "state", "create_time", "id"],
    )
    op.create_index(
        "ix_tasks_namespace_type_create_time_id", "tasks", ["namespace", "type", "create_time", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_namespace_type_create_time_id", table_name="tasks")
    op.drop_index("ix_tasks_namespace_state_create_time_id", table_name="tasks")
    op.drop_index("ix_tasks_namespace_create_time_id", table_name="tasks")
    op.create_index("ix_tasks_type_create_time_id", "tasks", ["type", "create_time", "id"])
    op.create_index("ix_tasks_create_time_id", "tasks", ["create_time", "id"])
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("namespace")
