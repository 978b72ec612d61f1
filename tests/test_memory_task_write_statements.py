"""A write of tasks runs one statement, whatever the backend and however many tasks a commit holds:
the guarded upsert's rowcount tells whether any row was left (closed by another process), so the
common path runs no query to find out.

Before, on PostgreSQL: SQLAlchemy kept no rowcount for the upsert (it read -1), so every commit with
task writes also ran ``SELECT tasks.id … WHERE tasks.id IN (…) AND status = 'interrupted'``."""

from __future__ import annotations

import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.types import Task
from tests.fixtures_memory import memory_url, statements  # noqa: F401 - the fixture: SQLite, PostgreSQL


def _reads_of_tasks(seen: list[str]) -> list[str]:
    return [s for s in seen if s.startswith("SELECT") and "TASKS" in s]


def test_writes_of_several_tasks_a_commit_run_no_query(memory_url: str) -> None:  # noqa: F811
    with SQLMemory(memory_url) as memory:
        tasks = [Task(query=f"q{i}") for i in range(5)]
        with statements(memory.engine) as seen:
            for task in tasks:
                memory.start_task(task)
            memory.flush()
            for task in tasks:
                memory.finish_task(task.model_copy(update={"status": "done", "answer": "a"}))
            memory.flush()
        assert _reads_of_tasks(seen) == []
        with memory.engine.begin() as conn:  # closed elsewhere: the upsert leaves it, the rare path writes it
            conn.execute(sa.update(sa.table("tasks", sa.column("id"), sa.column("status")))
                         .where(sa.column("id") == tasks[2].id).values(status="interrupted"))  # fmt: skip
        with statements(memory.engine) as seen:
            for task in tasks:
                memory.finish_task(task.model_copy(update={"status": "done", "answer": "b"}))
            memory.flush()
        assert len(_reads_of_tasks(seen)) == 1
        stored = [memory.get_task(task.id) for task in tasks]
        assert [(t.task.status, t.task.answer) for t in stored if t is not None] == [("done", "b")] * 5
