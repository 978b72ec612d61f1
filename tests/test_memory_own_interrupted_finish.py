"""A process that stopped its own task (``interrupted``: a cancel, a client gone) and finishes it later
(a resume in the same process, a node-opened task brought up to date) was not taken for dead: its
finish is written, with no warning, and its later steps run no statement looking for settling steps.

Before: the finish's guarded upsert left the row (stored ``interrupted``), the writer took that for a
reconcile elsewhere, logged "closed by a reconcile elsewhere … (taken for dead)" and ran a
settled-call query with every batch of steps for the rest of the process's life."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.types import Agent, Step, Task
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL

AGENT = Agent(role="executor", model="m", strategy="direct")


def test_a_task_its_own_process_interrupted_then_finished_is_no_taking_for_dead(
    memory_url: str, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    with SQLMemory(memory_url) as memory:
        task = Task(query="q")
        memory.start_task(task)
        memory.record_step(Step(task_id=task.id, index=0, stage="s", agent=AGENT, cost_usd=0.25))
        memory.finish_task(task.model_copy(update={"status": "interrupted", "cost_usd": 0.25}))  # its own cancel
        memory.flush()
        memory.record_step(Step(task_id=task.id, index=1, stage="s", agent=AGENT, cost_usd=0.5))  # resumed
        memory.finish_task(task.model_copy(update={"status": "done", "cost_usd": 0.75, "answer": "42"}))
        with caplog.at_level(logging.WARNING, logger="agentroute.memory"):
            memory.flush()
        stored = memory.get_task(task.id)
        assert stored is not None
        assert (stored.task.status, stored.task.answer, stored.task.cost_usd) == ("done", "42", pytest.approx(0.75))
        assert "taken for dead" not in caplog.text and "reconcile" not in caplog.text
        seen: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            seen.append(statement)

        sa.event.listen(memory.engine, "before_cursor_execute", record)
        try:
            memory.record_step(Step(task_id=task.id, index=2, stage="s", agent=AGENT))
            memory.flush()
        finally:
            sa.event.remove(memory.engine, "before_cursor_execute", record)
        assert not [s for s in seen if "settled-" in s or "steps.step_index" in s], seen  # no settled-call query
