"""A batch worker retired while alive has its call stored once as soon as its task's finish is
committed, not only once it learns it was retired (its next claim, heartbeat or lease check: up to
about 5 s, during which its real step and the settling step ``settled-<task>-<index>`` were both
stored, the call counted twice by every reader of the memory).

Worker A claims a query, starts its task and stores a provider call's write-ahead record; worker B
on another host (A's heartbeat older than B's lease; on PostgreSQL A's lease sessions ended, as a
partition does) retires A: the task ``interrupted``, the call settled at its worst case W. A's call
answers: A stores its step, finishes its task and writes the item's outcome, all in one commit.
Right after that commit (A has not yet claimed again nor checked its lease), the task holds A's step
alone, stays ``interrupted`` (the batch's rule: the query's rerun continues it) at what A paid, and the
item stays handed over."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.types import Step
from tests.fixtures_batch import AGENT, batch_url, retire_alive_worker  # noqa: F401 - the fixture: SQLite, PostgreSQL

PAID = 0.0004


def test_the_finish_of_a_retired_worker_replaces_its_settled_call_at_once(batch_url: str) -> None:  # noqa: F811
    with SQLMemory(batch_url) as a, SQLMemory(batch_url) as b:
        queue_a, queue_b, claimed, task = retire_alive_worker(a, b)
        a.record_step(Step(task_id=task.id, index=0, stage="s", agent=AGENT, cost_usd=PAID))  # A's call answers
        a.finish_task(task.model_copy(update={"status": "done", "cost_usd": PAID}))
        queue_a.finish(claimed.query_id, status="done", task_id=task.id, cost_usd=PAID)
        a.flush()
        with b.engine.connect() as conn:
            steps = conn.execute(sa.text("SELECT id, cost_usd FROM steps WHERE task_id = :t"), {"t": task.id}).all()
            item = conn.execute(sa.text("SELECT status, cost_usd FROM batch_items")).one()
        assert [(s.cost_usd, s.id.startswith("settled-")) for s in steps] == [(PAID, False)]  # was: W beside it
        stored = b.get_task(task.id)
        assert stored is not None and (stored.task.status, stored.task.cost_usd) == ("interrupted", pytest.approx(PAID))
        assert (item.status, item.cost_usd) == ("interrupted", pytest.approx(PAID))  # not taken back
        assert queue_b.interrupted_tasks("q1") == {task.id: pytest.approx(PAID)}  # the rerun continues it at what was paid
