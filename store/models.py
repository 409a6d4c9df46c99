"""The store's tables, as SQLAlchemy declarative models portable to SQLite and PostgreSQL.

The repository writes through the Core tables (``TaskRow.__table__`` ...) in bulk; the
models exist so Alembic and readers share one definition. Times are stored in UTC and
always come back timezone-aware, whatever the database keeps.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so later migrations can alter them on both databases."""


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored in UTC.

    SQLite has no time zones and hands back naive values; normalising on the way in and
    out keeps comparisons (keyset pagination) and round trips identical on both databases.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store times must be timezone-aware")
        utc = value.astimezone(dt.UTC)
        # SQLite compares the stored text, so keep it naive UTC in one fixed format.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """The declarative base of the store's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TaskRow(Base):
    """A task's current snapshot plus its immutable input, one row per task."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    state: Mapped[int] = mapped_column(SmallInteger)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempt_offset: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(BigInteger)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # Unbounded text where no API limit applies: a value PostgreSQL rejected would fail
    # its whole batch on every redelivery and stall the store.
    schedule_id: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str] = mapped_column(Text, default="")
    timeout_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # Serialized TaskInput and RetryPolicy: written once at submit, read for re-drives.
    input: Mapped[bytes] = mapped_column(LargeBinary)
    retry_policy: Mapped[bytes] = mapped_column(LargeBinary)
    # Serialized TaskResult / TaskError; attempt_errors is a serialized Task holding only
    # its attempt_errors field, which is the same bytes as the repeated field's encoding.
    result: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempt_errors: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    progress_current: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_total: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_message: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_attempt_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Text, as schedule_id: the value comes from the submitted event (migration 0005).
    namespace: Mapped[str] = mapped_column(Text, default="default", server_default="default")
    # The trace its submit started or joined, in hex; "" when it was not traced (and for
    # tasks from before migration 0006).
    trace_id: Mapped[str] = mapped_column(Text, default="", server_default="")

    __table_args__ = (
        # ListTasks reads one namespace's tasks newest first, optionally by state or type;
        # each index ends with (create_time, id) so the keyset condition and the ORDER BY
        # use it directly. The state index without the namespace serves what looks at
        # every namespace: retention and the scheduler's reconciliation.
        Index("ix_tasks_namespace_create_time_id", "namespace", "create_time", "id"),
        Index("ix_tasks_namespace_state_create_time_id", "namespace", "state", "create_time", "id"),
        Index("ix_tasks_namespace_type_create_time_id", "namespace", "type", "create_time", "id"),
        Index("ix_tasks_state_create_time_id", "state", "create_time", "id"),
        Index("ix_tasks_idempotency_key", "idempotency_key"),
    )


class TaskLabelRow(Base):
    """One label of a task, so ListTasks can filter by labels with an index."""

    __tablename__ = "task_labels"

    task_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    # The task's create time, so a page by label is one range of the index below in
    # ListTasks order. A trigger (migration 0002) copies it from ``tasks`` when an insert
    # leaves it out.
    create_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_task_labels_key_value_create_time", "key", "value", "create_time", "task_id"),
    )


class TaskHistoryRow(Base):
    """The task as it was at one version: a serialized Task, replayed to watchers."""

    __tablename__ = "task_history"

    task_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    snapshot: Mapped[bytes] = mapped_column(LargeBinary)


class StoreCursorRow(Base):
    """The single row recording the last EVENTS stream sequence applied, and the stream's
    time of that event, which tells whether the stream is still the one it was applied
    from (store.history, migration 0004), and the fencing epoch of the one replica allowed
    to write them (store.lease, migration 0006)."""

    __tablename__ = "store_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    applied_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    applied_time_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    writer_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ParkedEventRow(Base):
    """A task's event that arrived before the task's ``submitted`` event, kept until it.

    A submit publishes the ``submitted`` event (EVENTS) and the task (TASKS) at once, and
    two streams give no order between them: a fast worker's outcome can reach EVENTS
    first. Such an event is parked here, in the batch that read it, and applied right
    after its task's ``submitted`` (migration 0003). Several events of one message (a
    batch) can be parked: each is keyed by its sequence and its position among them
    (migration 0008).
    """

    __tablename__ = "parked_events"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, server_default="0")
    # Text: the id comes from the event, unchecked; a value the database rejected would
    # fail its whole batch on every redelivery.
    task_id: Mapped[str] = mapped_column(Text, index=True)
    event: Mapped[bytes] = mapped_column(LargeBinary)
    park_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)


CURSOR_ID = 1
"""The id of the only ``store_cursor`` row; the first migration inserts it."""

# The Core tables, for bulk statements; declarative types them as plain FromClause.
tasks = cast(Table, TaskRow.__table__)
task_labels = cast(Table, TaskLabelRow.__table__)
task_history = cast(Table, TaskHistoryRow.__table__)
store_cursor = cast(Table, StoreCursorRow.__table__)
parked_events = cast(Table, ParkedEventRow.__table__)
