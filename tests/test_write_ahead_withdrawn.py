"""An attempt given up while its write-ahead record waits on the memory (a deadline, a client gone,
``agentroute serve``'s memory wait) is never sent, and its record, not yet written, is left out: it
was stored once the memory could write again, settled by no step, so a resume or a batch item's
rerun charged the worst case of a call no provider saw."""

from __future__ import annotations

import asyncio

import pytest

import agentroute.memory.engine
from agentroute import Budget
from agentroute.memory import SQLMemory
from tests.fixtures_reply_server import ReplyServer
from tests.test_write_ahead_deadline import execute, start_locked


@pytest.mark.parametrize("how", ["cancelled", "deadline"])
async def test_an_attempt_given_up_before_its_record_is_written_leaves_no_record(tmp_path, monkeypatch, how):
    # each try waits 0.1 s for the lock, then is retried (30 s by default: its rows built once; see below)
    monkeypatch.setattr(agentroute.memory.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "m.db"
    with ReplyServer() as server, SQLMemory(f"sqlite:///{path}", retry_s=5) as memory:
        budget = Budget(usd=1.0, seconds=0.4 if how == "deadline" else None)
        dispatcher, run, lock = await start_locked(server, memory, path, budget)
        try:
            step = asyncio.ensure_future(execute(dispatcher, run))
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
