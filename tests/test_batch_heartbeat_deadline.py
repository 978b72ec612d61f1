"""A batch worker whose heartbeat cannot be stored stops at ``--lease-s`` after its last one, when
another host may take it for dead — also while the heartbeat still waits (a lock, a lost network,
the memory's 30 s of retries on PostgreSQL). Before, the worker waited on that heartbeat and ran on
through the batch, paying for queries another worker's reconcile could hand over and run again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentroute.batch import BatchRunner
from agentroute.graph import AgentGraph
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from tests.test_batch_server import StubOpenAIServer, pool_yaml

pytestmark = pytest.mark.postgres

LEASE_S = 0.9  # beats every 0.3 s


def test_a_worker_whose_heartbeat_hangs_stops_at_its_lease(tmp_path: Path, postgres_url: str):
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database

    memory = SQLMemory(create_database(postgres_url, "agentroute_batch_heartbeat_deadline"))
    with StubOpenAIServer(delay_s=0.1) as server:
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text(pool_yaml(server.url))
        pool = ModelPool.load(str(pool_file))
        compiled = AgentGraph("one").add_role("executor", prompt="Answer.").compile(
            pool=pool, router=CheapestRouter(), memory=memory
        )
        items = [{"query_id": f"q{i}", "query": f"q{i}?"} for i in range(40)]
        runner = BatchRunner(compiled, memory, batch_id="b", concurrency=2, lease_s=LEASE_S)
        blocker = memory.engine.connect()

        async def main() -> tuple[int, float, int, float]:
            run = asyncio.create_task(runner.run(items))
            while len(server.answered) < 2:
                assert not run.done(), run.result()  # bounded: a run that ended early fails here
                await asyncio.sleep(0.01)
            # its heartbeat's UPDATE now waits on this row lock, as on a lost network: it never returns
            blocker.begin()
            blocker.execute(sa.text("SELECT 1 FROM batch_workers WHERE id = :w FOR UPDATE"), {"w": runner.queue.worker_id})
            blocked_at, at_block = time.monotonic(), len(server.answered)
            deadline = blocked_at + 10
            while runner.stopped is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            stopped_after, at_stop = time.monotonic() - blocked_at, len(server.answered)
            blocker.rollback()  # its leave() can store now
            report = await asyncio.wait_for(run, timeout=30)
            return at_block, stopped_after, at_stop, report

        try:
            with pool:  # its connections closed at the end, whichever loop opened them
                at_block, stopped_after, at_stop, report = asyncio.run(main())
        finally:
            blocker.close()
            memory.close()
    assert report.stopped is not None and "no heartbeat stored for 0.9 s" in report.stopped, report.stopped
    assert stopped_after <= LEASE_S + 0.5, stopped_after  # its last stored beat began before the lock
    # 2 calls at a time, 0.1 s each, for at most ~1 s: the batch's other calls are not paid
    assert at_stop - at_block <= 24 and len(server.answered) <= at_stop + 2, (at_block, at_stop, len(server.answered))
    assert report.counts.get("running", 0) == 0 and report.counts.get("done", 0) < len(items)
