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

import asyncio
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentroute.budget import Attempt, Cost
from agentroute.memory import SQLMemory
from agentroute.memory.batches import META_KEY, BatchQueue
from agentroute.memory.pgserver import create_database
from agentroute.types import Agent, Step, Task

WORST = Cost(usd=0.001, tokens=100.0)
PAID = 0.0004
AGENT = Agent(role="executor", model="m", strategy="direct")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'memory.db'}"
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "600")  # A does not take its lease back during the test
    return create_database(request.getfixturevalue("postgres_url"), f"retired_{uuid.uuid4().hex[:12]}")


def _cut_leases(memory: SQLMemory) -> None:
    """End the sessions holding advisory locks in the memory's database (A's lease), as a partition does."""
    held = "FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()"
    with memory.engine.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_terminate_backend(l.pid) {held}"))
        for _ in range(250):  # bounded: 5 s
            if not conn.execute(sa.text(f"SELECT count(*) {held}")).scalar_one():
                return
            time.sleep(0.02)
    raise AssertionError("the leases were not released")


def test_the_finish_of_a_retired_worker_replaces_its_settled_call_at_once(url: str) -> None:
    with SQLMemory(url) as a, SQLMemory(url) as b:
        queue_a, queue_b = BatchQueue(a, "b"), BatchQueue(b, "b", lease_s=0.05)
        queue_b.host = "elsewhere/boot"  # B judges A by its heartbeat alone
        queue_a.add([("q1", {"query": "q"})])
        queue_a.join()
        (claimed,) = queue_a.claim(1)
        task = Task(query="q", metadata={"query_id": claimed.query_id, META_KEY: {"id": "b", "worker": queue_a.worker_id}})
        a.start_task(task)
        asyncio.run(a.reserve_attempt(Attempt(task.id, 0, 0, "executor:m:direct", "executor", WORST)))
        a.flush()
        time.sleep(0.1)  # A's heartbeat is older than B's lease
        if b.engine.dialect.name == "postgresql":
            _cut_leases(b)
        assert queue_b.reconcile().workers == (queue_a.worker_id,)
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
