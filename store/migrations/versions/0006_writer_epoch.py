"""The store's cursor records the fencing epoch of the writer allowed to apply events.

Several store replicas share the database and one of them, the holder of the writer lease
(store.lease), applies events. Each writer stores its lease's epoch here when it takes
over, and every batch checks it under the cursor's lock: a writer that lost the lease
(paused, partitioned) finds a newer epoch and cannot commit.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "store_cursor",
        sa.Column("writer_epoch", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("store_cursor") as batch:
        batch.drop_column("writer_epoch")
