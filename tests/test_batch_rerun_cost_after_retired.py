"""The rerun of a query whose worker was retired while alive costs what that worker's task was
finally charged, not what it was charged when the rerun started.

Worker A runs query ``q1``; its call hangs (provider ``a``). Worker B, on another host, retires A
(its call in flight settled at its worst case ``W``) and reruns ``q1`` (its own call hangs, on
provider ``b``), reading the cost of A's interrupted task then: ``W``. A's call is then released:
A, alive, retries it, stores its own step (the hung call and its retry: ``2 W``), finds itself
retired and replaces the settling step: A's task now costs ``2 W``. B's call then ends.

Before, B's item and ``--out`` line held A's task at ``W``, read when B started (the batch's
total was short of the bill by ``W``); now B reads it again when its run ends: ``2 W``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentroute.batch import RETIRED, BatchRunner
from agentroute.graph import AgentGraph
from agentroute.memory import open_memory
from agentroute.memory.batches import BatchQueue
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from tests.fixtures_billing_provider import BillingProvider

OUT_PRICE = 10.0
WORST = 100 * OUT_PRICE / 1e6  # $0.001: the `direct` strategy asks 100 tokens; input is free


@pytest.fixture
def providers() -> Iterator[tuple[BillingProvider, BillingProvider]]:
    """A's and B's providers: every call hangs while ``hang`` is set, until released."""
    with (
        BillingProvider(key=lambda body: "q", hangs=lambda key, system: True, out_price=OUT_PRICE) as a,
        BillingProvider(key=lambda body: "q", hangs=lambda key, system: True, out_price=OUT_PRICE) as b,
    ):
        yield a, b


def _compiled(provider: BillingProvider, path: Path, memory: Any) -> Any:
    path.write_text(
        f"models:\n  - id: m\n    backend: openai\n    model: m\n    base_url: {provider.url}\n    input_price: 0.0\n"
        f"    output_price: {OUT_PRICE}\n    max_tokens: 200\n    timeout_s: 30\n    context_window: 4096\n"
    )
    graph = AgentGraph("one").add_role("executor", prompt="Answer.")
    return graph.compile(pool=ModelPool.load(str(path)), router=CheapestRouter(), memory=memory)


async def _until(condition: Any) -> None:
    for _ in range(500):  # bounded: 10 s on a loaded machine
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def test_a_rerun_costs_the_retired_workers_task_as_finally_charged(
    providers: tuple[BillingProvider, BillingProvider], tmp_path: Path
) -> None:
    provider_a, provider_b = providers
    url = f"sqlite:///{tmp_path}/m.db"
    memory_a, memory_b = open_memory(url), open_memory(url)
    runner_a = BatchRunner(_compiled(provider_a, tmp_path / "a.yaml", memory_a), memory_a, batch_id="b", concurrency=1, lease_s=30.0)
    queue_b = BatchQueue(memory_b, "b", lease_s=0.05)
    queue_b.host = "elsewhere/boot"  # B runs on another host: A's pid tells it nothing
    out = tmp_path / "out.jsonl"
    runner_b = BatchRunner(_compiled(provider_b, tmp_path / "b.yaml", memory_b), memory_b, batch_id="b", concurrency=1,
                           lease_s=30.0, resume=True, out=out)  # fmt: skip

    async def main() -> None:
        run_a = asyncio.create_task(runner_a.run([{"query_id": "q1", "query": "What is 2+2?"}]))
        await _until(lambda: provider_a.hanging == 1)
        await asyncio.sleep(0.1)  # A's heartbeat is older than B's lease
        assert (await asyncio.to_thread(queue_b.reconcile)).workers == (runner_a.queue.worker_id,)
        run_b = asyncio.create_task(runner_b.run([]))
        await _until(lambda: provider_b.hanging == 1)  # B reran q1, A's task read at W
        provider_a.hang = False
        provider_a.release.set()
        assert (await asyncio.wait_for(run_a, timeout=30)).stopped == RETIRED
        provider_b.hang = False
        provider_b.release.set()
        await asyncio.wait_for(run_b, timeout=30)

    try:
        asyncio.run(main())
        memory_b.flush()
        (a_task,) = memory_b.trajectories(status=["interrupted"])
        assert a_task.task.cost_usd == pytest.approx(provider_a.billed["q"]) == pytest.approx(2 * WORST)
        ((line),) = [json.loads(raw) for raw in out.read_text().splitlines()]
        assert line["continues"] == [a_task.task.id]
        bill = provider_a.billed["q"] + provider_b.billed["q"]
        assert line["cost_usd"] == pytest.approx(bill), (line, bill)  # was: W short, A's task at W
        (item,) = runner_b.queue.items()
        assert item["status"] == "done" and item["cost_usd"] == pytest.approx(bill), item
    finally:
        memory_a.close()
        memory_b.close()
