"""Labels carry their task's create time, so ListTasks by label reads one index in order.

Listing by label used to walk every task newest first and probe its labels: a label whose
tasks are few or old made one page of a million-task store read the whole table. With
the task's create time in ``task_labels`` and an index on (key, value, create_time,
task_id), a page by label is a range of that index, like the other filters.

A trigger fills the column from ``tasks`` when an insert leaves it out, so writers need
not know about it (a writer that sets it skips the lookup). Existing rows are filled here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_TRIGGER = """
CREATE TRIGGER tr_task_labels_create_time AFTER INSERT ON task_labels
FOR EACH ROW WHEN NEW.create_time IS NULL
BEGIN
    UPDATE task_labels
    SET create_time = (SELECT create_time FROM tasks WHERE id = NEW.task_id)
    WHERE task_id = NEW.task_id AND key = NEW.key;
END
"""

_POSTGRES_FUNCTION = """
CREATE FUNCTION task_labels_create_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.create_time IS NULL THEN
        SELECT create_time INTO NEW.create_time FROM tasks WHERE id = NEW.task_id;
    END IF;
    RETURN NEW;
END
$$
"""

_POSTGRES_TRIGGER = """
CREATE TRIGGER tr_task_labels_create_time BEFORE INSERT ON task_labels
FOR EACH ROW EXECUTE FUNCTION task_labels_create_time()
"""


def upgrade() -> None:
    op.add_column("task_labels", sa.Column("create_time", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE task_labels SET create_time = "
        "(SELECT create_time FROM tasks WHERE tasks.id = task_labels.task_id)"
    )
    op.drop_index("ix_task_labels_key_value", table_name="task_labels")
    op.create_index(
        "ix_task_labels_key_value_create_time",
        "task_labels",
        ["key", "value", "create_time", "task_id"],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_FUNCTION)
        op.execute(_POSTGRES_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS tr_task_labels_create_time" + _on_table())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS task_labels_create_time()")
    op.drop_index("ix_task_labels_key_value_create_time", table_name="task_labels")
    op.create_index("ix_task_labels_key_value", "task_labels", ["key", "value", "task_id"])
    with op.batch_alter_table("task_labels") as batch:
        batch.drop_column("create_time")


def _on_table() -> str:
    return " ON task_labels" if op.get_bind().dialect.name == "postgresql" else ""
