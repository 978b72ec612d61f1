"""A provider attempt's write-ahead record is bounded by the task's deadline.

With a memory attached, each attempt's reservation is committed before the call is sent. A memory
that cannot commit (its SQLite file locked by another process, a PostgreSQL server down) held every
attempt until its writes went through or failed — seconds past a task's ``seconds`` budget — and the
call then went out at or after the deadline and was charged its worst case. Now the deadline wins:
the call is not made, nothing is charged, and the task ends at its deadline.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from agentroute import Budget, Dispatcher, ModelCard, ModelPool, TaskRun, make_router
from agentroute.memory import SQLMemory
from agentroute.types import Step
from tests.fixtures_reply_server import ReplyServer


async def start_locked(
    server: ReplyServer, memory: SQLMemory, path: Path, budget: Budget
) -> tuple[Dispatcher, TaskRun, sqlite3.Connection]:
    """A dispatcher over one model ``m`` at ``server``, a task of ``budget`` started and stored, then
    the memory's SQLite file ``path`` locked by another process's write transaction: the memory's
    next write waits until the returned connection rolls back."""
    card = ModelCard(id="m", backend="openai", model="m", base_url=server.url, input_price=1e-3, output_price=1e-3, timeout_s=5)
    pool = ModelPool([card])
    await pool.preload()  # the OpenAI SDK's import (~2 s on a loaded machine) is not the memory's wait
    dispatcher = Dispatcher(pool, make_router("cheapest"), memory=memory)
    run = dispatcher.start("q", query_id="q0", budget=budget)
    memory.flush()
    lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    return dispatcher, run, lock


def execute(dispatcher: Dispatcher, run: TaskRun) -> Coroutine[Any, Any, Step | None]:
    """The task's executor step: one call to ``m``."""
    return dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi", models=["m"])


async def test_a_locked_memory_does_not_hold_an_attempt_past_the_deadline(tmp_path):
    path = tmp_path / "m.db"
    with ReplyServer() as server, SQLMemory(f"sqlite:///{path}", retry_s=0) as memory:
        dispatcher, run, lock = await start_locked(server, memory, path, Budget(seconds=0.4))
        release = threading.Timer(2.5, lock.rollback)  # the old code waits for this
        release.start()
        try:
            started = time.perf_counter()
            step = await execute(dispatcher, run)
            elapsed = time.perf_counter() - started
        finally:
            release.cancel()
            lock.rollback()
            lock.close()
    assert elapsed < 1.5, f"the attempt waited {elapsed:.2f}s for the memory, past the 0.4 s deadline"
    assert step is None or step.status == "failed"  # the task ended at its deadline
    assert server.requests == []  # the provider never saw the call
    assert any(e.kind == "deadline" and "not called" in e.detail for e in run.context["audit"])
    assert run.ledger.spent_usd == 0.0 and run.ledger.spent["calls"] == 0  # no call was sent
    assert run.exhausted


async def test_a_step_cancelled_while_its_write_ahead_record_waits_is_not_charged(tmp_path):
    """Cancelled before the call went out (a client gone, ``serve``'s memory wait): was charged the
    attempt's worst case, as if the provider had seen it."""
    import asyncio

    path = tmp_path / "m.db"
    with ReplyServer() as server, SQLMemory(f"sqlite:///{path}", retry_s=5) as memory:
        dispatcher, run, lock = await start_locked(server, memory, path, Budget(usd=1.0))
        try:
            step = asyncio.ensure_future(execute(dispatcher, run))
            await asyncio.sleep(0.3)  # the step waits on its write-ahead record
            assert not step.done() and run.ledger.in_flight == 1
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
        finally:
            lock.rollback()
            lock.close()
    assert server.requests == []  # the provider never saw the call
    assert run.ledger.spent_usd == 0.0 and run.ledger.spent["calls"] == 0 and run.ledger.in_flight == 0
