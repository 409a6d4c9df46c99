"""The store's cursor records the stream time of the last event applied.

With it the store can tell that the EVENTS stream was recreated (or restored from an
older backup) under a kept database: the sequences then start again, and events at or
below the applied sequence would otherwise be skipped as applied (store.history).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("store_cursor", sa.Column("applied_time_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("store_cursor") as batch:
        batch.drop_column("applied_time_us")
