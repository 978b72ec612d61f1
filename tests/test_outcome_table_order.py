"""A router trained from the memory is trained on the same table in every run on the same data.

The memory returns a task's steps by (step index, creation time): two agents that answered the same
step at the same instant (a fan-out) tie, and PostgreSQL returns tied rows in their order on disk,
which an UPDATE changes (the new row version goes after the others). The outcome table's columns
and the graph planner's history rows followed that order: a read after the update gave another
table. Both now order a task's steps by (index, creation time, id) themselves. On a real SQLite file
and a real PostgreSQL server.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa

from agentroute.outcomes import OutcomeTable
from agentroute.types import Agent, Step, Task
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL


def _record(memory, qid: str, at: datetime, models: list[str]) -> None:
    """A finished task whose step 0 was answered by each of ``models`` at the same instant ``at``."""
    task = Task(query=f"question {qid}", metadata={"query_id": qid})
    memory.start_task(task)
    for n, model in enumerate(models):
        memory.record_step(Step(id=f"{qid}-{model}", task_id=task.id, index=0, stage="execute",
                                agent=Agent(model=model), input=task.query, output="x", cost_usd=0.01 * (n + 1),
                                score=0.5 + 0.1 * n, created_at=at))  # fmt: skip
    task.status, task.score = "done", 1.0
    memory.finish_task(task)


def _tables(memory) -> tuple[OutcomeTable, list[str], list[list[str]]]:
    from agentroute.routers.graph_planner.memory import HistoryMemory

    trajectories = memory.trajectories(status=["done"])
    table = OutcomeTable.from_trajectories(trajectories)
    history = HistoryMemory.from_store(memory, embed=lambda texts: np.ones((len(texts), 4), np.float32))
    return table, history.agent, [[s.id for s in t.steps] for t in trajectories]


def test_two_reads_around_an_update_of_earlier_rows_give_the_same_table(memory_url: str) -> None:  # noqa: F811
    from agentroute.memory import open_memory

    memory = open_memory(memory_url)
    try:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        _record(memory, "q0", at, ["zeta", "alpha"])  # inserted zeta first, so the old order was the disk's
        _record(memory, "q1", at.replace(second=1), ["alpha", "zeta"])
        memory.flush()
        before, history_before, steps_before = _tables(memory)
        engine = sa.create_engine(memory_url)
        try:
            with engine.begin() as conn:  # rewrites the first rows: PostgreSQL puts their new versions last
                conn.execute(sa.text("UPDATE steps SET latency_ms = latency_ms + 1 WHERE id LIKE :ids"), {"ids": "%zeta"})
        finally:
            engine.dispose()
        after, history_after, steps_after = _tables(memory)
    finally:
        memory.close()
    assert after.models == before.models == ["executor:alpha:direct", "executor:zeta:direct"]
    assert after.query_ids == before.query_ids and len(after.query_ids) == 2
    np.testing.assert_array_equal(after.scores, before.scores)
    np.testing.assert_array_equal(after.costs, before.costs)
    assert history_after == history_before == ["alpha:direct", "zeta:direct"] * 2
    assert steps_after == steps_before  # the memory's own read: a task's tied steps in one order
