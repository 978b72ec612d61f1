"""A batch worker that another worker's reconcile retired (took for dead, its queries handed over)
stops paying for them: its next heartbeat finds it retired, and it stops at once, its tasks in
flight cancelled (before: its heartbeat was stored as if nothing happened, and it ran on through
the batch, paying for queries the other worker also ran)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from agentroute.batch import BatchRunner
from agentroute.graph import AgentGraph
from agentroute.memory import open_memory
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from tests.test_batch_server import StubOpenAIServer, pool_yaml


def test_a_retired_worker_stops_paying_at_its_next_heartbeat(tmp_path: Path):
    with StubOpenAIServer(delay_s=0.2) as slow:
        pool = tmp_path / "pool.yaml"
        pool.write_text(pool_yaml(slow.url))
        memory = open_memory(f"sqlite:///{tmp_path}/m.db")
        compiled = AgentGraph("one").add_role("executor", prompt="Answer.").compile(
            pool=ModelPool.load(str(pool)), router=CheapestRouter(), memory=memory
        )
        items = [{"query_id": f"q{i}", "query": f"q{i}?"} for i in range(30)]
        runner = BatchRunner(compiled, memory, batch_id="b", concurrency=2, lease_s=0.6)  # beats every 0.2 s

        def retire() -> int:
            """What another host's reconcile stores when it takes this worker for dead."""
            with memory.engine.begin() as conn:
                conn.execute(sa.text("UPDATE batch_workers SET status = 'dead' WHERE id = :w"), {"w": runner.queue.worker_id})
                conn.execute(sa.text("UPDATE batch_items SET status = 'interrupted' WHERE status = 'running'"))
            return len(slow.answered)

        async def main():
            run = asyncio.create_task(runner.run(items))
            while len(slow.answered) < 2:
                assert not run.done(), run.result()  # bounded: a run that ended early fails here
                await asyncio.sleep(0.02)
            at_retire = await asyncio.to_thread(retire)
            report = await asyncio.wait_for(run, timeout=20)
            return at_retire, report

        try:
            at_retire, report = asyncio.run(main())
        finally:
            memory.close()
    assert report.stopped is not None and "retired by another worker's reconcile" in report.stopped
    # in the 0.2 s until its next heartbeat: the calls in flight and at most a round more
    assert len(slow.answered) - at_retire <= 4, (at_retire, len(slow.answered))
    assert report.counts.get("done", 0) < 10 and report.counts.get("running", 0) == 0
    assert all(r.status != "running" for r in report.results)
