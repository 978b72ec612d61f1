"""Only a batch worker pays for looking up the calls a reconcile elsewhere settled: its commits of
steps run one primary-key ``SELECT`` of the settling steps (another worker's reconcile may retire it
while it lives); any other process's commit of steps (``serve``, ``ask``, a user's graph) runs none,
as before b93b316 made every commit of steps of every process run it.

Real SQLite and PostgreSQL memories; the statements each commit runs through SQLAlchemy are counted
on the engine (``before_cursor_execute``; the steps' ``INSERT``/``COPY`` runs on the driver)."""

from __future__ import annotations

from agentroute.memory import SQLMemory
from agentroute.memory.batches import BatchQueue
from agentroute.types import Step, Task
from tests.fixtures_batch import AGENT, start_claimed_task
from tests.fixtures_memory import memory_url, statements  # noqa: F401 - the fixture: SQLite, PostgreSQL


def _commits_of_steps(memory: SQLMemory, task: Task, n: int = 3) -> list[str]:
    """The statements ``n`` commits of one step each run (the writer's path at concurrency 1)."""
    with statements(memory.engine) as seen:
        for index in range(n):
            memory.record_step(Step(task_id=task.id, index=index, stage="s", agent=AGENT, cost_usd=0.0002))
            memory.flush()
    return [s for s in seen if "STEPS" in s]


def test_a_process_outside_batches_looks_up_no_settling_step(memory_url: str) -> None:  # noqa: F811
    with SQLMemory(memory_url) as memory:
        task = Task(query="q")
        memory.start_task(task)
        memory.flush()
        ran = _commits_of_steps(memory, task)
    assert ran == [], ran  # was: a SELECT … WHERE id IN (…) / = ANY(…) each


def test_a_batch_worker_looks_its_settling_steps_up_once_a_commit(memory_url: str) -> None:  # noqa: F811
    with SQLMemory(memory_url) as memory:
        _, task = start_claimed_task(BatchQueue(memory, "b"))
        memory.flush()
        ran = _commits_of_steps(memory, task)
    assert len(ran) == 3 and all(s.startswith("SELECT TASK_ID FROM STEPS WHERE ID") for s in ran), ran
