"""Each provider attempt in flight at a crash gets its own audit event, the samples of ``sc@k`` too.

The samples of one ``sc@k`` step are attempts with the same task, step index and retry number;
they were audited with one text ("unsettled attempt 1 of step 0", three times). Now each event
says which call of the step it is. Real SQLite memory; the attempts are stored as the dispatcher
stores them (``reserve_attempt``), and settled by both homes of that rule: a LangGraph resume
(:meth:`TaskRun.from_checkpoint`) and a reconcile (:func:`settle_unsettled`, in a transaction).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentroute.budget import Attempt, Budget, Cost, Ledger
from agentroute.dispatch.run import TaskRun
from agentroute.memory import SQLMemory
from agentroute.types import Task

WORST = Cost(usd=0.001, tokens=110.0, calls=1.0, large_calls=0.0)


def _in_flight(memory: SQLMemory, samples: int) -> Task:
    """A running task whose step 0 has ``samples`` attempts in flight (``sc@K``'s samples, try 1)."""
    task = Task(query="q", budget=Budget(usd=1.0))
    memory.start_task(task)
    for _ in range(samples):
        asyncio.run(memory.reserve_attempt(Attempt(task.id, 0, 0, f"executor:m:sc@{samples}", "executor", WORST)))
    memory.flush()
    return task


def _check(memory: SQLMemory, task: Task, samples: int) -> None:
    events = [e for e in memory.audit_events(task.id) if e.kind == "unsettled_attempt"]
    assert len(events) == samples and len({e.detail for e in events}) == samples, [e.detail for e in events]
    (step,) = memory.get_task(task.id).steps  # type: ignore[union-attr]
    assert step.status == "failed" and step.cost_usd == pytest.approx(samples * WORST.usd)


def test_a_resume_audits_each_sample_in_flight_apart(tmp_path: Path) -> None:
    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        task = _in_flight(memory, 3)
        snapshot = {"task_id": task.id, "budget": {"usd": 1.0}, "ledger": Ledger(Budget(usd=1.0)).snapshot(), "index": 0}
        run = TaskRun.from_checkpoint(snapshot, memory)
        memory.flush()
        assert run.ledger.snapshot()["spent"][0] == pytest.approx(3 * WORST.usd)
        _check(memory, task, 3)


def test_a_reconcile_audits_each_sample_in_flight_apart_once(tmp_path: Path) -> None:
    from agentroute.memory.settle import settle_unsettled

    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        task = _in_flight(memory, 3)
        for _ in range(2):  # the second finds them settled: nothing more is stored
            with memory.engine.begin() as conn:
                settle_unsettled(conn, [task.id], when="by reconcile")
        _check(memory, task, 3)
