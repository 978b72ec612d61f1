"""Two reconciles of one dead worker's task at once settle its call in flight once (PostgreSQL).

Workers resumed together after a crash each reconcile the dead worker when they start, and
``agentroute memory reconcile`` may run beside them. Each stores the dead task's unsettled provider
attempt as a failed step at its worst case before it closes the task. On PostgreSQL (read
committed) both read the attempt as unsettled, and both stored it: the task had two settling steps
and two ``unsettled_attempt`` events for one call, and the rerun's budget was charged the call twice.
Now the first locks the task; the second waits, then finds it closed and settles nothing.

The interleaving is made certain, not left to luck: a third session holds the task's row lock until
both reconciles wait on it (``pg_stat_activity``), then lets them go. Real PostgreSQL, real
:class:`BatchQueue` and :meth:`SQLMemory.reconcile_running`, each on its own connection.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from agentroute.budget import Attempt, Cost
from agentroute.memory import SQLMemory
from agentroute.memory.batches import META_KEY, BatchQueue
from agentroute.memory.pgserver import create_database
from agentroute.memory.processes import PROCESS_KEY
from agentroute.memory.tables import TASKS
from agentroute.types import Task
from tests.fixtures_postgres import postgres_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.postgres

WORST = Cost(usd=0.001, tokens=100.0)


@pytest.fixture
def dead_task(postgres_url: str) -> Iterator[tuple[str, str]]:  # noqa: F811
    """A database of its own holding batch ``b``'s dead worker ``w-dead`` (a reaped pid of this host)
    and its ``running`` task with one provider attempt in flight; yields (url, task id)."""
    url = create_database(postgres_url, f"settle_{uuid.uuid4().hex[:12]}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    with SQLMemory(url) as memory:
        queue = BatchQueue(memory, "b", worker_id="w-dead")
        queue.add([("q1", {"query": "x"})])
        queue.join()
        queue.claim(1)
        task = Task(query="x", metadata={"query_id": "q1", META_KEY: {"id": "b", "worker": "w-dead"}})
        memory.start_task(task)
        asyncio.run(memory.reserve_attempt(Attempt(task.id, 0, 0, "executor:m:direct", "executor", WORST)))
        memory.flush()
        with memory.engine.begin() as conn:  # the worker and its task's process: gone
            conn.execute(sa.text("UPDATE batch_workers SET pid = :pid"), {"pid": dead.pid})
            meta = conn.execute(sa.select(TASKS.c.meta).where(TASKS.c.id == task.id)).scalar_one()
            meta = {**meta, PROCESS_KEY: {**meta[PROCESS_KEY], "pid": dead.pid, "start": None}}
            conn.execute(sa.update(TASKS).where(TASKS.c.id == task.id).values(meta=meta))
    yield url, task.id


def _at_once(url: str, task_id: str, reconciles: list[Callable[[SQLMemory], object]]) -> None:
    """Run ``reconciles`` in threads, each with its own memory, released together once all wait on the task's row."""
    engine = sa.create_engine(url)
    errors: list[BaseException] = []

    def run(reconcile: Callable[[SQLMemory], object]) -> None:
        try:
            with SQLMemory(url) as memory:
                reconcile(memory)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        with engine.connect() as holder:
            holder.execute(sa.text("SELECT id FROM tasks WHERE id = :t FOR UPDATE"), {"t": task_id})
            threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in reconciles]
            for thread in threads:
                thread.start()
            waiting, deadline = 0, time.monotonic() + 20  # a bound for a loaded machine, not a wait
            while waiting < len(reconciles) and time.monotonic() < deadline and not errors:
                time.sleep(0.02)
                with engine.connect() as conn:
                    waiting = conn.execute(sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )).scalar_one()  # fmt: skip
            holder.rollback()
        for thread in threads:
            thread.join(20)
        assert not errors, errors
        assert waiting == len(reconciles), "the reconciles did not both reach the task's row"
    finally:
        engine.dispose()


def _check_settled_once(url: str, task_id: str) -> None:
    with SQLMemory(url) as memory:
        trajectory = memory.get_task(task_id)
        assert trajectory is not None and trajectory.task.status == "interrupted"
        # was: two failed steps at step 0 ($0.002 stored for a $0.001 call) and two audit events
        assert [(s.index, s.status, s.cost_usd) for s in trajectory.steps] == [(0, "failed", WORST.usd)]
        assert [e.kind for e in memory.audit_events(task_id)] == ["unsettled_attempt"]
        assert trajectory.task.cost_usd == pytest.approx(WORST.usd)


def test_two_batch_reconciles_at_once_settle_the_call_in_flight_once(dead_task: tuple[str, str]) -> None:
    url, task_id = dead_task
    _at_once(url, task_id, [lambda m, i=i: BatchQueue(m, "b", worker_id=f"w{i}").reconcile() for i in range(2)])
    _check_settled_once(url, task_id)


def test_memory_reconcile_beside_a_batch_reconcile_settles_the_call_in_flight_once(dead_task: tuple[str, str]) -> None:
    url, task_id = dead_task
    _at_once(url, task_id, [lambda m: BatchQueue(m, "b", worker_id="w1").reconcile(), lambda m: m.reconcile_running()])
    _check_settled_once(url, task_id)
