"""The memory's read queries (and the router-state upsert), on an open connection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from agentroute.memory.codec import FEEDBACK_SOURCE, audit_from_row, jsonable, step_from_row, task_from_row
from agentroute.memory.tables import ATTEMPTS, AUDIT, FEEDBACK, ROUTER_STATE, STEPS, TASKS
from agentroute.types import Agent, AuditEvent, Step, Trajectory

__all__ = [
    "STEP_ORDER",
    "step_order",
    "step_sort_key",
    "task_filter",
    "get_task",
    "iter_trajectories",
    "audit_events",
    "stats",
    "save_router_state",
    "load_router_state",
]

PAGE = 1000
"""Tasks fetched per round trip when iterating trajectories (two queries per page)."""


def task_filter(
    *,
    graph: str | None = None,
    status: Sequence[str] | str | None = None,
    since: datetime | None = None,
    with_score: bool = False,
) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses on ``tasks``; ``status=None`` means every finished status (not ``running``)."""
    where: list[sa.ColumnElement[bool]] = []
    if graph is not None:
        where.append(TASKS.c.graph == graph)
    if status is None:
        where.append(TASKS.c.status != "running")
    else:
        where.append(TASKS.c.status.in_([status] if isinstance(status, str) else list(status)))
    if since is not None:
        where.append(TASKS.c.created_at >= since)
    if with_score:
        where.append(TASKS.c.score.is_not(None))
    return where


STEP_ORDER = ("index", "created_at", "id")
"""The order of a task's steps, by :class:`~agentroute.types.Step` field: index, creation time, then
id, which orders the steps of one index created at the same instant (a fan-out; PostgreSQL returns
tied rows in their order on disk, which an UPDATE changes). The one home of the rule: the memory's
reads and exports (:func:`step_order`) and tables built from trajectories (:func:`step_sort_key`)."""


def step_order(steps: sa.FromClause = STEPS) -> list[sa.ColumnElement[Any]]:
    """:data:`STEP_ORDER` as ``ORDER BY`` columns of ``steps`` (the ``steps`` table or an alias)."""
    return [steps.c["step_index" if name == "index" else name] for name in STEP_ORDER]


def step_sort_key(step: Step) -> tuple[Any, ...]:
    """:data:`STEP_ORDER` as a sort key of a step read back (``sorted(steps, key=step_sort_key)``)."""
    return tuple(getattr(step, name) for name in STEP_ORDER)


STEP_COLUMNS: list[sa.ColumnElement[Any]] = [c for c in STEPS.columns if c.name != "decision"]
STEP_COLUMNS.append(sa.cast(STEPS.c.decision, sa.Text).label("decision"))
"""The columns of ``steps`` with the decision as JSON text, which pydantic parses in one pass."""


def latest_feedback(
    column: sa.Column[Any], task_id: sa.ColumnElement[Any] = TASKS.c.id
) -> sa.ScalarSelect[Any]:
    """``column`` of the task's latest feedback (the newest given: by ``created_at``, then ``id``),
    correlated to ``tasks`` (or of the task ``task_id`` names): the one whose score is the task's
    (the writer's rule)."""
    return (
        sa.select(column)
        .where(FEEDBACK.c.task_id == task_id)
        .order_by(FEEDBACK.c.created_at.desc(), FEEDBACK.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


TASK_COLUMNS: list[sa.ColumnElement[Any]] = [
    *TASKS.columns,
    latest_feedback(FEEDBACK.c.source).label(FEEDBACK_SOURCE),
]
"""The columns of ``tasks`` with the source of the task's latest feedback (the one whose score is
the task's), so that a read task says whether its score is feedback."""


def _steps_by_task(
    conn: sa.Connection, task_ids: list[str], agents: dict[Any, Agent]
) -> dict[str, list[Step]]:
    query = (
        sa.select(*STEP_COLUMNS).where(STEPS.c.task_id.in_(task_ids)).order_by(STEPS.c.task_id, *step_order())
    )
    by_task: dict[str, list[Step]] = {}
    for row in conn.execute(query).mappings():
        by_task.setdefault(row["task_id"], []).append(step_from_row(row, agents))
    return by_task


def get_task(conn: sa.Connection, task_id: str) -> Trajectory | None:
    row = conn.execute(sa.select(*TASK_COLUMNS).where(TASKS.c.id == task_id)).mappings().first()
    if row is None:
        return None
    steps = _steps_by_task(conn, [task_id], {}).get(task_id, [])
    return Trajectory(task=task_from_row(row), steps=steps)


def iter_trajectories(
    conn: sa.Connection, where: list[sa.ColumnElement[bool]], *, limit: int | None = None, page: int = PAGE
) -> Iterator[Trajectory]:
    """Trajectories oldest first, ``page`` tasks at a time (keyset pagination on created_at, id)."""
    agents: dict[Any, Agent] = {}
    remaining = limit
    after: tuple[datetime, str] | None = None
    while remaining is None or remaining > 0:
        size = page if remaining is None else min(page, remaining)
        query = sa.select(*TASK_COLUMNS).where(*where)
        if after is not None:
            at, last = after
            query = query.where(
                sa.or_(TASKS.c.created_at > at, sa.and_(TASKS.c.created_at == at, TASKS.c.id > last))
            )
        rows = conn.execute(query.order_by(TASKS.c.created_at, TASKS.c.id).limit(size)).mappings().all()
        if not rows:
            return
        steps = _steps_by_task(conn, [r["id"] for r in rows], agents)
        for row in rows:
            yield Trajectory(task=task_from_row(row), steps=steps.get(row["id"], []))
        if len(rows) < size:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])
        if remaining is not None:
            remaining -= len(rows)


def audit_events(conn: sa.Connection, task_id: str | None) -> list[AuditEvent]:
    query = sa.select(AUDIT).order_by(AUDIT.c.created_at, AUDIT.c.id)
    if task_id is not None:
        query = query.where(AUDIT.c.task_id == task_id)
    return [audit_from_row(row) for row in conn.execute(query).mappings()]


def stats(conn: sa.Connection) -> dict[str, Any]:
    by_status: dict[str, int] = {
        status: int(n)
        for status, n in conn.execute(sa.select(TASKS.c.status, sa.func.count()).group_by(TASKS.c.status))
    }
    models = {
        model: {"calls": int(calls), "cost_usd": float(cost or 0.0), "tokens": int(tokens or 0)}
        for model, calls, cost, tokens in conn.execute(
            sa.select(
                STEPS.c.model,
                sa.func.count(),
                sa.func.sum(STEPS.c.cost_usd),
                sa.func.sum(STEPS.c.tokens_in + STEPS.c.tokens_out),
            )
            .group_by(STEPS.c.model)
            .order_by(STEPS.c.model)
        )
    }
    tokens_in, tokens_out = conn.execute(
        sa.select(sa.func.sum(STEPS.c.tokens_in), sa.func.sum(STEPS.c.tokens_out))
    ).one()
    count = sa.select(sa.func.count())
    return {
        "tasks": {k: int(v) for k, v in sorted(by_status.items())},
        "tasks_total": sum(by_status.values()),
        "steps": sum(m["calls"] for m in models.values()),
        "cost_usd": sum(m["cost_usd"] for m in models.values()),
        "tokens_in": int(tokens_in or 0),
        "tokens_out": int(tokens_out or 0),
        "models": models,
        # provider attempts recorded before they were sent: retries, fallbacks and samples included
        "attempts": int(conn.execute(count.select_from(ATTEMPTS)).scalar_one()),
        "feedback": int(conn.execute(count.select_from(FEEDBACK)).scalar_one()),
        # kept for a task not stored (yet): one still running elsewhere, or a mistyped id (scores nothing)
        "feedback_no_task": int(
            conn.execute(
                count.select_from(FEEDBACK).where(~sa.exists().where(TASKS.c.id == FEEDBACK.c.task_id))
            ).scalar_one()
        ),
        "audit_events": int(conn.execute(count.select_from(AUDIT)).scalar_one()),
    }


def save_router_state(conn: sa.Connection, router: str, state: dict[str, Any]) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(ROUTER_STATE).values(router=router, state=jsonable(state), updated_at=datetime.now(UTC))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[ROUTER_STATE.c.router],
            set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
        )
    )


def load_router_state(conn: sa.Connection, router: str) -> dict[str, Any] | None:
    query = sa.select(ROUTER_STATE.c.state).where(ROUTER_STATE.c.router == router)
    state = conn.execute(query).scalar_one_or_none()
    return dict(state) if state is not None else None
