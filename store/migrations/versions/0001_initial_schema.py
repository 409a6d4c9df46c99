"""Initial schema: tasks, their labels and history, and the applied-sequence cursor.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen: plain column types here, not store.models, which will change.
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_offset", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("schedule_id", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("input", sa.LargeBinary(), nullable=False),
        sa.Column("retry_policy", sa.LargeBinary(), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.LargeBinary(), nullable=True),
        sa.Column("attempt_errors", sa.LargeBinary(), nullable=False),
        sa.Column("progress_current", sa.BigInteger(), nullable=False),
        sa.Column("progress_total", sa.BigInteger(), nullable=False),
        sa.Column("progress_message", sa.Text(), nullable=False),
        sa.Column("create_time", Time, nullable=False),
        sa.Column("update_time", Time, nullable=False),
        sa.Column("start_time", Time, nullable=True),
        sa.Column("end_time", Time, nullable=True),
        sa.Column("run_at", Time, nullable=True),
        sa.Column("next_attempt_time", Time, nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_create_time_id", "tasks", ["create_time", "id"])
    op.create_index("ix_tasks_state_create_time_id", "tasks", ["state", "create_time", "id"])
    op.create_index("ix_tasks_type_create_time_id", "tasks", ["type", "create_time", "id"])
    op.create_index("ix_tasks_idempotency_key", "tasks", ["idempotency_key"])

    op.create_table(
        "task_labels",
        sa.Column("task_id", sa.String(26), nullable=False),
        sa.Column("key", sa.String(63), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_task_labels_task_id_tasks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "key", name="pk_task_labels"),
    )
    op.create_index("ix_task_labels_key_value", "task_labels", ["key", "value", "task_id"])

    op.create_table(
        "task_history",
        sa.Column("task_id", sa.String(26), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("snapshot", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_task_history_task_id_tasks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "version", name="pk_task_history"),
    )

    cursor = op.create_table(
        "store_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("applied_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_store_cursor"),
    )
    # The one row the store updates; it exists from the start so apply() never has to insert.
    op.bulk_insert(cursor, [{"id": 1, "applied_sequence": 0}])


def downgrade() -> None:
    op.drop_table("store_cursor")
    op.drop_table("task_history")
    op.drop_index("ix_task_labels_key_value", table_name="task_labels")
    op.drop_table("task_labels")
    op.drop_index("ix_tasks_idempotency_key", table_name="tasks")
    op.drop_index("ix_tasks_type_create_time_id", table_name="tasks")
    op.drop_index("ix_tasks_state_create_time_id", table_name="tasks")
    op.drop_index("ix_tasks_create_time_id", table_name="tasks")
    op.drop_table("tasks")
