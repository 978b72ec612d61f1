"""A settling step is replaced by its process's own late step only where it can exist: the common
path pays nothing for it.

A reconcile elsewhere that takes a live process for dead stores its call in flight as a settling
step at its worst case (:mod:`agentroute.memory.settle`); when that process stores its own step of
the index after all, the settling one is replaced, so the call is charged once. Before, every
batch of steps of every process ran a ``DELETE … RETURNING`` looking for a settling step to
replace (about 7 µs of CPU a batch on SQLite, a round trip on PostgreSQL; at concurrency 1 a batch
is one step). Now a process pays for it only once it learns it was taken for dead
(``SQLMemory.taken_for_dead``, called by a batch worker found retired): then the steps it already
stored replace their settling steps, and so does each batch of steps it stores after.

Real SQLite memory, its own writer thread; the statements it runs are traced on the driver.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentroute.budget import Attempt, Cost
from agentroute.memory import SQLMemory
from agentroute.memory.settle import settle_unsettled
from agentroute.types import Agent, Step, Task

WORST = Cost(usd=0.001, tokens=100.0)
AGENT = Agent(role="executor", model="m", strategy="direct")


def _traced(memory: SQLMemory) -> list[str]:
    """Every statement the memory's connections run from now on (checked out again: traced)."""
    statements: list[str] = []

    def trace(dbapi_conn: Any, *_: Any) -> None:
        dbapi_conn.set_trace_callback(statements.append)

    sa.event.listen(memory.engine, "checkout", trace)
    return statements


def _settled_elsewhere(memory: SQLMemory, tasks: list[Task]) -> None:
    """What a reconcile that took this process for dead does: each task's call in flight (index 0)
    stored at its worst case, the tasks closed ``interrupted``."""
    for task in tasks:
        asyncio.run(memory.reserve_attempt(Attempt(task.id, 0, 0, "executor:m:direct", "executor", WORST)))
    memory.flush()
    with memory.engine.begin() as conn:
        assert len(settle_unsettled(conn, [t.id for t in tasks], when="by reconcile")) == len(tasks)
        conn.execute(sa.text("UPDATE tasks SET status = 'interrupted', cost_usd = 0.001"))


def _steps(memory: SQLMemory, task: Task) -> list[tuple[str, float]]:
    with memory.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, cost_usd FROM steps WHERE task_id = :t ORDER BY step_index"), {"t": task.id})
        return [(r.id, r.cost_usd) for r in rows]


def _task_cost(memory: SQLMemory, task: Task) -> float:
    with memory.engine.connect() as conn:
        return float(conn.execute(sa.text("SELECT cost_usd FROM tasks WHERE id = :t"), {"t": task.id}).scalar_one())


def test_steps_of_a_process_never_taken_for_dead_look_for_no_settling_step(tmp_path: Path) -> None:
    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        task = Task(query="q")
        memory.start_task(task)
        memory.flush()
        statements = _traced(memory)
        for index in range(3):  # three batches of one step: the writer's common path
            memory.record_step(Step(task_id=task.id, index=index, stage="s", agent=AGENT, cost_usd=0.0002))
            memory.flush()
        writes = [s for s in statements if "steps" in s.lower() and not s.lstrip().upper().startswith("SELECT")]
        assert writes and all(s.lstrip().upper().startswith("INSERT") for s in writes), writes  # was: a DELETE each
        assert not [s for s in statements if "settled-" in s], statements


def test_a_process_taken_for_dead_replaces_settling_steps_before_and_after_it_learns(tmp_path: Path) -> None:
    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        early, late = Task(query="early"), Task(query="late")
        memory.start_task(early)
        memory.start_task(late)
        memory.flush()
        _settled_elsewhere(memory, [early, late])  # both calls in flight settled at their worst case
        # `early`'s own step is stored before the process knows: both stored, until it learns
        memory.record_step(Step(task_id=early.id, index=0, stage="s", agent=AGENT, cost_usd=0.0004))
        memory.flush()
        assert sorted(cost for _, cost in _steps(memory, early)) == [0.0004, 0.001]
        assert memory.taken_for_dead([early.id, late.id]) == 1  # it learns (a batch worker: found retired)
        ((step_id, cost),) = _steps(memory, early)
        assert cost == 0.0004 and not step_id.startswith("settled-")
        assert _task_cost(memory, early) == 0.0004  # closed: the cost of its steps
        # `late`'s own step, stored after it knows: replaces the settling one as it is stored
        memory.record_step(Step(task_id=late.id, index=0, stage="s", agent=AGENT, cost_usd=0.0003))
        memory.flush()
        ((step_id, cost),) = _steps(memory, late)
        assert cost == 0.0003 and not step_id.startswith("settled-")
        assert _task_cost(memory, late) == 0.0003
        with memory.engine.connect() as conn:
            details = dict(conn.execute(sa.text("SELECT task_id, detail FROM audit_events WHERE kind = 'unsettled_attempt'")).all())
        assert all("replaced by the step its process stored after all" in d for d in details.values()), details
        assert "charged $0.0004, not the worst case $0.001" in details[early.id], details
        assert memory.stats()["cost_usd"] == pytest.approx(0.0007)
