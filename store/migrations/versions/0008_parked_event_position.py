"""Parked events are keyed by their sequence and their position in its message.

An EVENTS message may hold several events (a ``TaskEvents`` batch, header
``Conveyor-Events``), all at the message's one stream sequence, and more than one of them
can overtake its task's ``submitted``. Lone events, the only ones parked before, are at
position 0.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("parked_events") as batch:
        batch.add_column(
            sa.Column("position", sa.Integer(), nullable=False, server_default="0")
        )
        batch.drop_constraint("pk_parked_events", type_="primary")
        batch.create_primary_key("pk_parked_events", ["sequence", "position"])


def downgrade() -> None:
    # An older store keys parked events by sequence alone: it could keep only one event of
    # a batch, so going back while a batch's events wait for their task would lose them.
    waiting = op.get_bind().execute(
        sa.text("SELECT count(*) FROM parked_events WHERE position > 0")
    )
    if waiting.scalar_one():
        raise RuntimeError(
            "parked_events holds events of batches, which the schema before 0008 cannot "
            "keep: run this version until they are applied (their tasks' submits arrive) "
            "or pruned, then downgrade"
        )
    with op.batch_alter_table("parked_events") as batch:
        batch.drop_constraint("pk_parked_events", type_="primary")
        batch.create_primary_key("pk_parked_events", ["sequence"])
        batch.drop_column("position")
