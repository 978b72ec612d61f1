"""Batch fixtures: a worker retired while alive.

``batch_url`` is :func:`tests.fixtures_memory.fresh_url` on each backend, with the lease check of
PostgreSQL put off (A does not take its lease back during a test). :func:`retire_alive_worker`:
worker A claims query ``q1``, starts its task and stores a provider call's write-ahead record at
:data:`WORST`; worker B on another host retires A (A's heartbeat older than B's lease; on PostgreSQL
A's lease sessions ended, as a partition does): the task ``interrupted``, the call settled at W."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa

from agentroute.budget import Attempt, Cost
from agentroute.memory import SQLMemory
from agentroute.memory.batches import META_KEY, BatchQueue, Claimed
from agentroute.types import Agent, Task
from tests.fixtures_memory import BACKENDS, fresh_url

WORST = Cost(usd=0.001, tokens=100.0)
AGENT = Agent(role="executor", model="m", strategy="direct")


@pytest.fixture(params=BACKENDS)
def batch_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new memory's URL (SQLite, then PostgreSQL) where a worker keeps its lease once taken."""
    if request.param == "postgres":
        monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "600")
    return fresh_url(request, tmp_path)


def cut_leases(memory: SQLMemory) -> None:
    """End the sessions holding advisory locks in the memory's database (A's lease), as a partition does."""
    held = "FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()"
    with memory.engine.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_terminate_backend(l.pid) {held}"))
        for _ in range(250):  # bounded: 5 s
            if not conn.execute(sa.text(f"SELECT count(*) {held}")).scalar_one():
                return
            time.sleep(0.02)
    raise AssertionError("the leases were not released")


class Retired(NamedTuple):
    """What :func:`retire_alive_worker` leaves: A's queue, B's, A's claim and A's task."""

    queue_a: BatchQueue
    queue_b: BatchQueue
    claimed: Claimed
    task: Task


def start_claimed_task(queue: BatchQueue) -> tuple[Claimed, Task]:
    """``queue``'s worker adds query ``q1`` to batch ``b``, claims it and starts its task (not flushed)."""
    queue.add([("q1", {"query": "q"})])
    queue.join()
    (claimed,) = queue.claim(1)
    task = Task(query="q", metadata={"query_id": claimed.query_id, META_KEY: {"id": "b", "worker": queue.worker_id}})
    queue.memory.start_task(task)
    return claimed, task


def retire_alive_worker(a: SQLMemory, b: SQLMemory) -> Retired:
    """A (on ``a``) claims ``q1`` and reserves a call of its task at W; B (on ``b``) retires A."""
    queue_a, queue_b = BatchQueue(a, "b"), BatchQueue(b, "b", lease_s=0.05)
    queue_b.host = "elsewhere/boot"  # B judges A by its heartbeat alone
    claimed, task = start_claimed_task(queue_a)
    asyncio.run(a.reserve_attempt(Attempt(task.id, 0, 0, "executor:m:direct", "executor", WORST)))
    a.flush()
    time.sleep(0.1)  # A's heartbeat is older than B's lease
    if b.engine.dialect.name == "postgresql":
        cut_leases(b)
    assert queue_b.reconcile().workers == (queue_a.worker_id,)
    return Retired(queue_a, queue_b, claimed, task)
