"""A write of tasks runs one statement, whatever the backend and however many tasks a commit holds:
the guarded upsert's rowcount tells whether any row was left (closed by another process), so the
common path runs no query to find out.

Before, on PostgreSQL: SQLAlchemy kept no rowcount for the upsert (it read -1), so every commit with
task writes also ran ``SELECT tasks.id … WHERE tasks.id IN (…) AND status = 'interrupted'``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.memory.pgserver import create_database
from agentroute.types import Task


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'memory.db'}"
    return create_database(request.getfixturevalue("postgres_url"), f"writes_{uuid.uuid4().hex[:12]}")


@contextmanager
def reads_of_tasks(engine: sa.Engine) -> Iterator[list[str]]:
    """The SELECTs of ``tasks`` ``engine`` runs meanwhile."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "tasks" in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_writes_of_several_tasks_a_commit_run_no_query(url: str) -> None:
    with SQLMemory(url) as memory:
        tasks = [Task(query=f"q{i}") for i in range(5)]
        with reads_of_tasks(memory.engine) as seen:
            for task in tasks:
                memory.start_task(task)
            memory.flush()
            for task in tasks:
                memory.finish_task(task.model_copy(update={"status": "done", "answer": "a"}))
            memory.flush()
        assert seen == []
        with memory.engine.begin() as conn:  # closed elsewhere: the upsert leaves it, the rare path writes it
            conn.execute(sa.update(sa.table("tasks", sa.column("id"), sa.column("status")))
                         .where(sa.column("id") == tasks[2].id).values(status="interrupted"))  # fmt: skip
        with reads_of_tasks(memory.engine) as seen:
            for task in tasks:
                memory.finish_task(task.model_copy(update={"status": "done", "answer": "b"}))
            memory.flush()
        assert len(seen) == 1
        stored = [memory.get_task(task.id) for task in tasks]
        assert [(t.task.status, t.task.answer) for t in stored if t is not None] == [("done", "b")] * 5
