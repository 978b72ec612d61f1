"""Only a batch worker pays for looking up the calls a reconcile elsewhere settled: its commits of
steps run one primary-key ``SELECT`` of the settling steps (another worker's reconcile may retire it
while it lives); any other process's commit of steps (``serve``, ``ask``, a user's graph) runs none,
as before b93b316 made every commit of steps of every process run it.

Real SQLite and PostgreSQL memories; the statements each commit runs through SQLAlchemy are counted
on the engine (``before_cursor_execute``; the steps' ``INSERT``/``COPY`` runs on the driver)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.memory.batches import META_KEY, BatchQueue
from agentroute.memory.pgserver import create_database
from agentroute.types import Agent, Step, Task

AGENT = Agent(role="executor", model="m", strategy="direct")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return create_database(request.getfixturevalue("postgres_url"), f"lookup_{uuid.uuid4().hex[:12]}")


@contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(" ".join(statement.split()).upper())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _commits_of_steps(memory: SQLMemory, task: Task, n: int = 3) -> list[str]:
    """The statements ``n`` commits of one step each run (the writer's path at concurrency 1)."""
    with _statements(memory.engine) as seen:
        for index in range(n):
            memory.record_step(Step(task_id=task.id, index=index, stage="s", agent=AGENT, cost_usd=0.0002))
            memory.flush()
    return [s for s in seen if "STEPS" in s]


def test_a_process_outside_batches_looks_up_no_settling_step(url: str) -> None:
    with SQLMemory(url) as memory:
        task = Task(query="q")
        memory.start_task(task)
        memory.flush()
        ran = _commits_of_steps(memory, task)
    assert ran == [], ran  # was: a SELECT … WHERE id IN (…) / = ANY(…) each


def test_a_batch_worker_looks_its_settling_steps_up_once_a_commit(url: str) -> None:
    with SQLMemory(url) as memory:
        queue = BatchQueue(memory, "b")
        queue.add([("q1", {"query": "q"})])
        queue.join()
        (claimed,) = queue.claim(1)
        task = Task(query="q", metadata={"query_id": claimed.query_id, META_KEY: {"id": "b", "worker": queue.worker_id}})
        memory.start_task(task)
        memory.flush()
        ran = _commits_of_steps(memory, task)
    assert len(ran) == 3 and all(s.startswith("SELECT TASK_ID FROM STEPS WHERE ID") for s in ran), ran
