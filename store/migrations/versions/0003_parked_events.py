"""Events that arrive before their task's ``submitted`` event are parked until it.

A submit now publishes the ``submitted`` event and the task at the same time instead of
one after the other (one round trip instead of two). The two go to different streams,
which give no order between them, so a worker's event of a task can be applied before
the task exists; the store keeps it in ``parked_events`` and applies it right after the
task's ``submitted``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parked_events",
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("event", sa.LargeBinary(), nullable=False),
        sa.Column("park_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_parked_events"),
    )
    op.create_index("ix_parked_events_task_id", "parked_events", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_parked_events_task_id", table_name="parked_events")
    op.drop_table("parked_events")
