"""A process closed by ``memory reconcile`` elsewhere while it lived (PostgreSQL: its lease lost in
a partition) has its call in flight charged once, outside any batch.

Process A (memory ``a``) runs a task with a provider call in flight (its write-ahead record
stored). A is cut off: the session holding its lease is ended, and A cannot take the lease back
(its claims' lock is held, as a lost network would keep it from reconnecting). A reconcile on
another host (memory ``b``, its host key another) sees the lease released for the grace, closes
the task ``interrupted`` and stores the call at its worst case (a settling step). A's call then
answers: A stores its own step of that index. Once A takes its lease back, it knows it may have
been taken for dead: the steps it stored since its lease was last found held replace their
settling steps, and the task costs what was paid.

Before (no replacement): both steps stayed, W + the call's cost stored for one call; with a
replacement looking at every batch of steps, every process paid a statement a batch for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import sqlalchemy as sa

from agentroute.budget import Attempt, Cost
from agentroute.memory import SQLMemory, processes
from agentroute.memory.pgserver import create_database
from agentroute.types import Agent, Step, Task
from tests.fixtures_postgres import postgres_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.postgres

WORST = Cost(usd=0.001, tokens=100.0)
AGENT = Agent(role="executor", model="m", strategy="direct")


def _steps(memory: SQLMemory, task_id: str) -> list[tuple[str, float]]:
    with memory.engine.connect() as conn:
        return [(r.id, r.cost_usd) for r in conn.execute(sa.text("SELECT id, cost_usd FROM steps WHERE task_id = :t"), {"t": task_id})]


def test_a_live_process_closed_by_a_reconcile_elsewhere_has_its_call_charged_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.1")  # the grace: 0.3 s
    url = create_database(postgres_url, f"lease_{uuid.uuid4().hex[:12]}")
    with SQLMemory(url) as a, SQLMemory(url) as b:
        task = Task(query="q")
        a.start_task(task)  # claimed by no one (a plain run): found by the steps A stored
        asyncio.run(a.reserve_attempt(Attempt(task.id, 0, 0, "executor:m:direct", "executor", WORST)))
        a.flush()
        claims = a._claims  # noqa: SLF001 - A's lease connection, cut off below
        assert claims is not None
        with claims._lock:  # noqa: SLF001 - A cannot reach the database to take its lease back
            with a.engine.connect() as conn:  # the partition ends A's lease session
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"))
            with monkeypatch.context() as elsewhere:
                elsewhere.setattr(processes, "host_key", lambda: "elsewhere/boot")
                assert b.reconcile_running() == [task.id]
            a.record_step(Step(task_id=task.id, index=0, stage="s", agent=AGENT, cost_usd=0.0004))  # A's call answers
            a.flush()
            assert sorted(cost for _, cost in _steps(b, task.id)) == [0.0004, 0.001]
        for _ in range(250):  # bounded: 5 s. A's lease check reconnects and takes it back
            if len(_steps(b, task.id)) == 1:
                break
            time.sleep(0.02)
        ((step_id, cost),) = _steps(b, task.id)
        assert cost == 0.0004 and not step_id.startswith("settled-")
        stored = b.get_task(task.id)
        assert stored is not None and stored.task.status == "interrupted" and stored.task.cost_usd == pytest.approx(0.0004)
        with b.engine.connect() as conn:
            (detail,) = conn.execute(sa.text("SELECT detail FROM audit_events WHERE kind = 'unsettled_attempt'")).scalars()
        assert "replaced by the step its process stored after all" in detail, detail
