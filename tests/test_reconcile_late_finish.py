"""A task closed by a reconcile elsewhere while its process lived, outside any batch, then finished
by that process: the process owns its task, so its finish is the truth (status and cost), and its
real step replaces the settling step at once, in the finish's own commit.

Process A (memory ``a``) runs a task with a provider call in flight (its write-ahead record
stored). A reconcile from another memory (``b``) takes A for dead (its liveness check answers
"gone", as for a pid it cannot see or a lease lost in a partition), closes the task
``interrupted`` and stores the call at its worst case, W. A's call then answers and A finishes.

Before: A's finish turned the task ``done`` at what it paid, while its steps held the real call
and the settling step (W + what it paid for one call) until A learnt it was taken for dead, which
outside batches and without a lease (SQLite) was never."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from agentroute.budget import Attempt, Cost
from agentroute.memory import SQLMemory, processes
from agentroute.types import Agent, Step, Task
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL

WORST = Cost(usd=0.001, tokens=100.0)
PAID = 0.0004
AGENT = Agent(role="executor", model="m", strategy="direct")


def _steps(memory: SQLMemory, task_id: str) -> list[tuple[str, float]]:
    with memory.engine.connect() as conn:
        query = sa.text("SELECT id, cost_usd FROM steps WHERE task_id = :t ORDER BY id")
        return [(r.id, r.cost_usd) for r in conn.execute(query, {"t": task_id})]


@pytest.mark.parametrize("apart", [False, True], ids=["step-with-finish", "step-before-finish"])
def test_a_late_finish_is_the_truth_and_its_step_replaces_the_settled_call(
    memory_url: str, apart: bool, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    with SQLMemory(memory_url) as a, SQLMemory(memory_url) as b:
        task = Task(query="q")
        a.start_task(task)
        asyncio.run(a.reserve_attempt(Attempt(task.id, 0, 0, "executor:m:direct", "executor", WORST)))
        a.flush()
        with monkeypatch.context() as elsewhere:  # B takes A for dead
            elsewhere.setattr(processes, "process_alive", lambda pid, start: False)
            assert b.reconcile_running() == [task.id]
        assert [cost for _, cost in _steps(b, task.id)] == [WORST.usd]
        a.record_step(Step(task_id=task.id, index=0, stage="s", agent=AGENT, cost_usd=PAID))  # A's call answers
        if apart:
            a.flush()
        a.finish_task(task.model_copy(update={"status": "done", "cost_usd": PAID, "answer": "42"}))
        a.flush()
        ((step_id, cost),) = _steps(b, task.id)  # at once: no lease check, no end of run waited for
        assert cost == PAID and not step_id.startswith("settled-")
        stored = b.get_task(task.id)
        assert stored is not None
        assert (stored.task.status, stored.task.answer, stored.task.cost_usd) == ("done", "42", pytest.approx(PAID))
        (event,) = [e for e in b.audit_events(task.id) if e.kind == "unsettled_attempt"]
        assert "replaced by the step its process stored after all" in event.detail
        # A knows it was taken for dead: its later steps replace settled calls as they are stored
        assert a._writer.replacing  # noqa: SLF001


def test_a_process_never_taken_for_dead_writes_its_tasks_as_before(memory_url: str) -> None:  # noqa: F811
    with SQLMemory(memory_url) as a:
        task = Task(query="q")
        a.start_task(task)
        a.record_step(Step(task_id=task.id, index=0, stage="s", agent=AGENT, cost_usd=PAID))
        a.finish_task(task.model_copy(update={"status": "done", "cost_usd": PAID}))
        a.flush()
        a.finish_task(task.model_copy(update={"status": "done", "cost_usd": PAID, "answer": "again"}))  # a finish written twice
        a.flush()
        stored = a.get_task(task.id)
        assert stored is not None and (stored.task.status, stored.task.answer) == ("done", "again")
        assert not a._writer.replacing  # noqa: SLF001
