"""A task one of whose steps the memory refused is never stored as finished whole: it ends
``failed``, its metadata saying how many steps are missing (before: ``done``, its stored steps
summing to less than its cost, and a resumed batch skipped it as finished)."""

from __future__ import annotations

import sqlite3

import pytest

from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryWriteError
from agentroute.types import Agent, Step, Task


def _memory(tmp_path, **kwargs) -> SQLMemory:
    memory = SQLMemory(f"sqlite:///{tmp_path}/memory.db", **kwargs)
    with sqlite3.connect(tmp_path / "memory.db") as conn:  # the database refuses one kind of step
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON steps WHEN NEW.stage = 'refused' "
                     "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END")  # fmt: skip
    return memory


def _step(task: Task, index: int, stage: str) -> Step:
    return Step(task_id=task.id, index=index, stage=stage, agent=Agent(model="m"), output="o", cost_usd=0.1)


def _check(memory: SQLMemory, task: Task) -> None:
    stored = memory.get_task(task.id)
    assert stored is not None and stored.task.status == "failed" and stored.task.cost_usd == pytest.approx(0.2)
    assert stored.task.metadata["agentroute_missing_steps"] == 1
    assert "1 step(s) of this task were not stored" in stored.task.metadata["error"]
    assert [s.stage for s in stored.steps] == ["answer"]


@pytest.mark.parametrize("together", [False, True], ids=["step-then-finish", "one-batch"])
def test_a_task_missing_a_step_is_not_stored_done(tmp_path, together):
    from agentroute.memory.batches import BatchQueue

    memory = _memory(tmp_path, prompt_commit=not together, flush_interval_s=60 if together else 0.05)
    try:
        queue = BatchQueue(memory, "b1")
        queue.add([("q1", {"query": "q"})])
        assert [c.query_id for c in queue.claim(1)] == ["q1"]
        task = Task(id="t1", query="q", graph="qa")
        memory.start_task(task)
        memory.record_step(_step(task, 0, "answer"))
        memory.record_step(_step(task, 1, "refused"))
        if not together:
            with pytest.raises(MemoryWriteError):
                memory.flush()
        task.status, task.answer, task.cost_usd = "done", "a", 0.2
        memory.finish_task(task)
        queue.finish("q1", status="done", task_id=task.id, cost_usd=0.2)  # a batch's item, in the same commit
        if together:  # the task row went in before its refused step: written again
            with pytest.raises(MemoryWriteError):
                memory.flush()
        memory.flush()
        _check(memory, task)
        [item] = queue.items()
        assert item["status"] == "failed" and "not stored" in item["error"]  # not skipped as finished by a resume
        other = Task(id="t2", query="q", graph="qa", status="done")  # other tasks are untouched
        memory.start_task(other)
        memory.finish_task(other)
        memory.flush()
        assert memory.get_task("t2").task.status == "done"
    finally:
        memory.close()
