"""An attempt given up while its write-ahead record waits on the memory (a deadline, a client gone,
``agentroute serve``'s memory wait) is never sent, and its record, not yet written, is left out: it
was stored once the memory could write again, settled by no step, so a resume or a batch item's
rerun charged the worst case of a call no provider saw."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

import agentroute.memory.engine
from agentroute import Budget, Dispatcher, ModelCard, ModelPool, make_router
from agentroute.memory import SQLMemory
from tests.fixtures_reply_server import ReplyServer


@pytest.mark.parametrize("how", ["cancelled", "deadline"])
async def test_an_attempt_given_up_before_its_record_is_written_leaves_no_record(tmp_path, monkeypatch, how):
    # each try waits 0.1 s for the lock, then is retried (30 s by default: its rows built once; see below)
    monkeypatch.setattr(agentroute.memory.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "m.db"
    with ReplyServer() as server, SQLMemory(f"sqlite:///{path}", retry_s=5) as memory:
        card = ModelCard(id="m", backend="openai", model="m", base_url=server.url, input_price=1e-3, output_price=1e-3, timeout_s=5)
        pool = ModelPool([card])
        await pool.preload()
        dispatcher = Dispatcher(pool, make_router("cheapest"), memory=memory)
        run = dispatcher.start("q", query_id="q0", budget=Budget(usd=1.0, seconds=0.4 if how == "deadline" else None))
        memory.flush()
        lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # another process's write transaction
        lock.execute("BEGIN EXCLUSIVE")
        try:
            step = asyncio.ensure_future(
                dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi", models=["m"])
            )
            await asyncio.sleep(0.3)  # the step waits on its write-ahead record
            if how == "cancelled":
                step.cancel()
            await asyncio.gather(step, return_exceptions=True)
        finally:
            lock.rollback()  # the memory can write again
            lock.close()
        memory.flush()
        assert server.requests == []  # the call was never sent
        assert memory.attempts(run.task.id) == []  # was: its record, charged at a resume
