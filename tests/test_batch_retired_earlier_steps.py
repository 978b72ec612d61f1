"""A batch worker retired while alive stores its own step of a call the reconcile settled before its
task finishes (a multi-step task, or a worker killed for real before the finish): that step replaces
the settling step ``settled-<task>-<index>`` in its own commit.

Before, the worker's real step stood beside the settling step until the task's finish was committed
or the worker learned it was retired: the call counted twice by every reader meanwhile (the rerun's
budget among them), and for ever when the worker died before its task's finish.

Worker A claims a query, starts its task and stores a provider call's write-ahead record; worker B
on another host retires A (A's heartbeat older than B's lease; on PostgreSQL A's lease sessions
ended, as a partition does): the task ``interrupted``, the call settled at its worst case W. A's
call answers and A stores its step alone (its task goes on)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.types import Step
from tests.fixtures_batch import AGENT, WORST, batch_url, retire_alive_worker  # noqa: F401 - the fixture: SQLite, PostgreSQL

PAID = 0.0004


def _steps(memory: SQLMemory, task_id: str) -> list[tuple[int, float, bool]]:
    with memory.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT step_index, cost_usd, id FROM steps WHERE task_id = :t ORDER BY step_index, id"), {"t": task_id})
        return [(r.step_index, pytest.approx(r.cost_usd), r.id.startswith("settled-")) for r in rows]


def test_a_retired_workers_step_replaces_the_settled_call_before_its_task_ends(batch_url: str) -> None:  # noqa: F811
    with SQLMemory(batch_url) as a, SQLMemory(batch_url) as b:
        queue_a, queue_b, claimed, task = retire_alive_worker(a, b)
        assert _steps(b, task.id) == [(0, pytest.approx(WORST.usd), True)]

        a.record_step(Step(task_id=task.id, index=0, stage="s", agent=AGENT, cost_usd=PAID))  # A's call answers
        a.flush()  # its task goes on: no finish in this commit
        assert _steps(b, task.id) == [(0, pytest.approx(PAID), False)]  # was: W beside it
        stored = b.get_task(task.id)
        assert stored is not None and (stored.task.status, stored.task.cost_usd) == ("interrupted", pytest.approx(PAID))
        assert queue_b.interrupted_tasks("q1") == {task.id: pytest.approx(PAID)}  # the rerun's budget: what was billed
        with b.engine.connect() as conn:
            (detail,) = conn.execute(sa.text("SELECT detail FROM audit_events WHERE kind = 'unsettled_attempt'")).scalars()
        assert "replaced by the step its process stored" in detail

        a.record_step(Step(task_id=task.id, index=1, stage="s", agent=AGENT, cost_usd=PAID))  # its next call
        a.finish_task(task.model_copy(update={"status": "done", "cost_usd": 2 * PAID}))
        queue_a.finish(claimed.query_id, status="done", task_id=task.id, cost_usd=2 * PAID)
        a.flush()
        assert _steps(b, task.id) == [(0, pytest.approx(PAID), False), (1, pytest.approx(PAID), False)]
        stored = b.get_task(task.id)
        assert stored is not None and (stored.task.status, stored.task.cost_usd) == ("interrupted", pytest.approx(2 * PAID))
