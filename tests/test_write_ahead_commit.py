"""An attempt's write-ahead record is committed at once, also with writes queued right behind it.

Concurrent attempts' records share one commit: the writer takes what is queued behind a record's
flush marker into the same transaction. It then went on waiting for the batch deadline
(``flush_interval_s``) when nothing more came, although a marker asked for a commit now: an
attempt whose record had a step or audit write right behind it waited up to ``flush_interval_s``
(batching memories: ``prompt_commit=False`` or under load) before its provider call was sent.
"""

from __future__ import annotations

import asyncio
import time

from agentroute.budget import Attempt, Cost
from agentroute.memory import SQLMemory
from agentroute.types import AuditEvent


async def test_a_write_queued_behind_an_attempt_does_not_hold_its_commit(tmp_path):
    with SQLMemory(f"sqlite:///{tmp_path}/m.db", prompt_commit=False, flush_interval_s=2.0) as memory:
        memory.flush()
        waits = []
        for index in range(3):
            memory.record_audit(AuditEvent(task_id="t", stage="s", kind="retry"))  # the writer waits for its batch
            await asyncio.sleep(0.02)
            reserved = asyncio.ensure_future(memory.reserve_attempt(Attempt("t", index, 0, "r:m:direct", "s", Cost(0.001, 10))))
            started = time.perf_counter()
            await asyncio.sleep(0)  # the record and its marker are queued
            memory.record_audit(AuditEvent(task_id="t", stage="s", kind="retry"))  # another task's write, right behind
            await reserved
            waits.append(time.perf_counter() - started)
        assert max(waits) < 1.0, f"attempts waited {[round(w, 2) for w in waits]} s for their records"
        assert len(memory.attempts("t")) == 3
