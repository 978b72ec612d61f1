"""The memory's SQL schema as SQLModel tables (the Alembic migrations create the same schema).

Six tables: ``tasks``, ``steps``, ``feedback``, ``audit_events``, ``router_state`` and ``attempts``
(the write-ahead record of each provider attempt, see :class:`AttemptRow`); two more keep durable batches (``batch_items``: one row per query of a batch, the work queue and its
outcome; ``batch_workers``: the processes working on a batch, for claims and crash recovery). JSON is
stored as ``JSON`` (``JSONB`` on PostgreSQL, text on SQLite); times as UTC. Steps and audit events
name their task by an indexed ``task_id`` that is not a foreign key, so a log line is never refused
because its task row has not arrived yet. The tables live on their own ``MetaData`` so that
applications using SQLModel for their own tables do not get ours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

__all__ = [
    "EXPRESSION_INDEXES",
    "include_object",
    "JSONType",
    "UTCDateTime",
    "metadata",
    "TaskRow",
    "StepRow",
    "FeedbackRow",
    "AuditRow",
    "RouterStateRow",
    "BatchItemRow",
    "BatchWorkerRow",
    "AttemptRow",
]

JSONType = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
"""Portable JSON column type: ``JSONB`` on PostgreSQL, JSON text on SQLite; ``None`` is SQL NULL."""

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone; naive means UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value.replace(tzinfo=UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=JSONType, nullable=nullable)


def _time(*, index: bool = False, nullable: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable)


def _text(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=sa.Text, nullable=nullable)


class _Table(SQLModel):
    metadata: ClassVar[sa.MetaData] = metadata


class TaskRow(_Table, table=True):
    """One task: the query, its graph, budget, final status, answer, cost and score."""

    __tablename__ = "tasks"

    id: str = Field(primary_key=True)
    query: str = _text(nullable=False)
    graph: str = Field(default="", index=True)
    task_type: str | None = None
    budget: dict[str, Any] | None = _json()
    status: str = Field(default="running", index=True)
    answer: str | None = _text()
    cost_usd: float = 0.0
    score: float | None = None
    meta: dict[str, Any] = _json(nullable=False)
    created_at: datetime = _time(index=True)
    finished_at: datetime | None = _time(nullable=True)


class StepRow(_Table, table=True):
    """One call of one agent: the agent as columns, the router's decision as JSON, usage and outcome."""

    __tablename__ = "steps"

    id: str = Field(primary_key=True)
    task_id: str = Field(index=True)
    step_index: int
    stage: str
    role: str
    model: str
    strategy: str
    router: str | None = None
    decision: dict[str, Any] | None = _json()
    input: str = _text(nullable=False)
    output: str = _text(nullable=False)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    status: str = "ok"
    error: str | None = _text()
    score: float | None = None
    confidence: float | None = None
    created_at: datetime = _time()


class FeedbackRow(_Table, table=True):
    """An outcome score attached to a task after the fact (by a user, a grader, a test)."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True)
    score: float
    source: str = "user"
    comment: str = _text(nullable=False)
    created_at: datetime = _time()


class AuditRow(_Table, table=True):
    """A blocked operation, retry or fallback."""

    __tablename__ = "audit_events"

    id: str = Field(primary_key=True)
    task_id: str = Field(index=True)
    stage: str
    kind: str
    subject: str = ""
    detail: str = _text(nullable=False)
    created_at: datetime = _time()


class RouterStateRow(_Table, table=True):
    """The latest JSON state of a named router."""

    __tablename__ = "router_state"

    router: str = Field(primary_key=True)
    state: dict[str, Any] = _json(nullable=False)
    updated_at: datetime = _time()


class BatchItemRow(_Table, table=True):
    """One query of a batch: the item as JSON text, who claimed it, and how it ended.

    ``status``: ``pending`` → ``running`` (claimed by ``worker``) → ``done`` / ``budget_exhausted``
    / ``failed`` / ``interrupted`` (claimable again). ``task_id`` names the task of the latest attempt.
    """

    __tablename__ = "batch_items"
    __table_args__ = (sa.Index("ix_batch_items_batch_status", "batch_id", "status", "seq"),)

    batch_id: str = Field(primary_key=True)
    query_id: str = Field(primary_key=True)
    seq: int = 0
    item: str = _text(nullable=False)
    status: str = "pending"
    worker: str | None = None
    task_id: str | None = None
    attempts: int = 0
    cost_usd: float = 0.0
    error: str | None = _text()
    updated_at: datetime = _time()


class BatchWorkerRow(_Table, table=True):
    """A process working on a batch: where it runs (host, pid) and when it was last alive."""

    __tablename__ = "batch_workers"

    id: str = Field(primary_key=True)
    batch_id: str = Field(index=True)
    host: str
    pid: int
    status: str = "running"
    started_at: datetime = _time()
    heartbeat_at: datetime = _time()


class AttemptRow(_Table, table=True):
    """The write-ahead record of a provider attempt, stored before the attempt is sent: its task,
    step and the worst case reserved for it. A step of the same task and index settles it; one left
    unsettled (a crash with the call in flight) is charged its worst case when the task resumes."""

    __tablename__ = "attempts"

    id: str = Field(primary_key=True)
    task_id: str = Field(index=True)
    step_index: int
    attempt: int
    agent: str
    stage: str
    usd: float
    tokens: float
    calls: float
    large_calls: float
    created_at: datetime = _time()


TASKS: sa.Table = TaskRow.__table__  # type: ignore[attr-defined]
STEPS: sa.Table = StepRow.__table__  # type: ignore[attr-defined]
FEEDBACK: sa.Table = FeedbackRow.__table__  # type: ignore[attr-defined]
AUDIT: sa.Table = AuditRow.__table__  # type: ignore[attr-defined]
ROUTER_STATE: sa.Table = RouterStateRow.__table__  # type: ignore[attr-defined]
BATCH_ITEMS: sa.Table = BatchItemRow.__table__  # type: ignore[attr-defined]
BATCH_WORKERS: sa.Table = BatchWorkerRow.__table__  # type: ignore[attr-defined]
ATTEMPTS: sa.Table = AttemptRow.__table__  # type: ignore[attr-defined]

EXPRESSION_INDEXES = frozenset({"ix_tasks_batch_worker"})
"""Indexes on an expression, made by the migrations in each dialect's own SQL (migration 0004) and
not declared here: schema comparison (:func:`include_object`) leaves them out."""


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's ``include_object`` hook: everything but the :data:`EXPRESSION_INDEXES`."""
    return not (type_ == "index" and name in EXPRESSION_INDEXES)
