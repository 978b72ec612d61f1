"""A batch worker that stops for want of a stored heartbeat, after another worker retired it, has its
cancelled call charged once.

Worker A runs one query; its call hangs (a loopback provider billing each call its worst case
``W`` = 100 tokens × $10/M). A's heartbeats then stop reaching the database (they hang, as on a lost
network). Worker B, on another host, retires A: A's call in flight is stored at its worst case (a
settling step). A, alive, never hears of it: at ``lease_s`` without a stored heartbeat it stops,
cancelling its call — the dispatcher stores the cancelled call as a step at its worst case.

Before: both steps stayed, ``2 W`` stored for a ``W`` bill (only a worker that *found* itself
retired had its own steps replace the settling ones). Now a worker stopped for either reason does
so when its run ends: ``W`` stored, once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentroute.batch import BatchRunner
from agentroute.graph import AgentGraph
from agentroute.memory import open_memory
from agentroute.memory.batches import BatchQueue
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from tests.fixtures_billing_provider import BillingProvider

OUT_PRICE = 10.0
WORST = 100 * OUT_PRICE / 1e6  # $0.001: the `direct` strategy asks 100 tokens; input is free
LEASE_S = 1.0  # A beats every 0.33 s and stops 1 s after its last stored beat


@pytest.fixture
def provider() -> Iterator[BillingProvider]:
    with BillingProvider(key=lambda body: "q", hangs=lambda key, system: True, out_price=OUT_PRICE) as server:
        yield server


def test_a_worker_stopped_unheard_after_its_retirement_has_its_cancelled_call_charged_once(
    provider: BillingProvider, tmp_path: Path
) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text(
        f"models:\n  - id: m\n    backend: openai\n    model: m\n    base_url: {provider.url}\n    input_price: 0.0\n"
        f"    output_price: {OUT_PRICE}\n    max_tokens: 200\n    timeout_s: 30\n    context_window: 4096\n"
    )
    url = f"sqlite:///{tmp_path}/m.db"
    memory_a, memory_b = open_memory(url), open_memory(url)
    compiled = AgentGraph("one").add_role("executor", prompt="Answer.").compile(
        pool=ModelPool.load(str(pool)), router=CheapestRouter(), memory=memory_a
    )
    runner = BatchRunner(compiled, memory_a, batch_id="b", concurrency=1, lease_s=LEASE_S)
    queue_b = BatchQueue(memory_b, "b", lease_s=0.05)
    queue_b.host = "elsewhere/boot"  # B runs on another host: A's pid tells it nothing
    unheard, heard_again = threading.Event(), threading.Event()
    beat = runner.queue.heartbeat

    def heartbeat() -> bool:  # A's heartbeats stop reaching the database once `unheard` is set
        if unheard.is_set():
            heard_again.wait(10)  # bounded: released when the test ends
        return beat()

    runner.queue.heartbeat = heartbeat  # type: ignore[method-assign]

    async def main() -> Any:
        run = asyncio.create_task(runner.run([{"query_id": "q1", "query": "What is 2+2?"}]))
        for _ in range(500):  # bounded: 10 s on a loaded machine
            if provider.hanging or run.done():
                break
            await asyncio.sleep(0.02)
        assert provider.hanging == 1 and not run.done(), "A did not reach its call"
        unheard.set()
        await asyncio.sleep(0.1)  # A's heartbeat is older than B's lease
        assert (await asyncio.to_thread(queue_b.reconcile)).workers == (runner.queue.worker_id,)
        try:
            return await asyncio.wait_for(run, timeout=30)
        finally:
            heard_again.set()  # its hung heartbeat thread ends: asyncio.run waits for it

    try:
        report = asyncio.run(main())
        assert report.stopped.startswith("no heartbeat stored"), report.stopped  # it never heard it was retired
        memory_a.flush()
        with memory_b.engine.connect() as conn:
            steps = conn.execute(sa.text("SELECT id, cost_usd FROM steps")).all()
            (task_cost,) = conn.execute(sa.text("SELECT cost_usd FROM tasks")).scalars()
        assert provider.calls["q"] == 1 and provider.billed["q"] == pytest.approx(WORST)
        # once: A's cancelled step replaced the settling one (was: both, 2 W for a W bill)
        assert len(steps) == 1 and not steps[0].id.startswith("settled-"), steps
        assert steps[0].cost_usd == pytest.approx(WORST) and task_cost == pytest.approx(WORST)
    finally:
        heard_again.set()
        memory_a.close()
        memory_b.close()
