"""A batch worker retired while still alive: its call in flight is charged once, at what it cost.

Worker A runs one query against a loopback provider that bills every call its worst case ``W`` =
100 tokens × $10/M = $0.001; A's call hangs. Worker B, on another host (its queue says so: a host
sees another's pids as meaningless and judges it by its heartbeat alone; on PostgreSQL A's lease
sessions are ended too, as a partition does), reconciles with a lease of 50 ms: A's heartbeat is
older, so B retires A — A's task ``interrupted``, its call in flight stored as a failed step at its
worst case (``unsettled_attempt``), its item ``interrupted`` — and re-claims the item (or leaves it
waiting for its rerun). Then A's call is released: A was alive all along, its dispatcher retries,
stores its own step of that index and finishes its task.

Before: the task held both the settling step and A's own (3 W stored for a 2 W bill), A's late
finish made it ``done`` (so the query's rerun got a fresh budget), a waiting item was marked done
by A — or A claimed it again and paid a third call — and the interrupted item kept its old cost ($0).
Now A's step replaces the settling one (its audit event says so), the task stays ``interrupted`` at
the bill, for the rerun to continue; A's finish takes no item back and writes no ``--out`` line, its
next claim finds it retired and it stops; the item costs what its task was charged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agentroute.batch import RETIRED, BatchRunner
from agentroute.graph import AgentGraph
from agentroute.memory import open_memory
from agentroute.memory.batches import BatchQueue
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from tests.fixtures_batch import cut_leases
from tests.fixtures_billing_provider import BillingProvider
from tests.fixtures_postgres import postgres_url  # noqa: F401 - a fixture

OUT_PRICE = 10.0
WORST = 100 * OUT_PRICE / 1e6  # $0.001: the `direct` strategy asks 100 tokens; input is free


@pytest.fixture
def provider() -> Iterator[BillingProvider]:
    """Bills every call to one key; the first call hangs until released."""
    with BillingProvider(key=lambda body: "q", hangs=lambda key, system: True, out_price=OUT_PRICE) as server:
        yield server


def _rows(memory: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    with memory.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def _run(provider: BillingProvider, tmp_path: Path, url: str, *, reclaim: bool) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text(
        f"models:\n  - id: m\n    backend: openai\n    model: m\n    base_url: {provider.url}\n    input_price: 0.0\n"
        f"    output_price: {OUT_PRICE}\n    max_tokens: 200\n    timeout_s: 30\n    context_window: 4096\n"
    )
    memory_a, memory_b = open_memory(url), open_memory(url)
    compiled = AgentGraph("one").add_role("executor", prompt="Answer.").compile(
        pool=ModelPool.load(str(pool)), router=CheapestRouter(), memory=memory_a
    )
    runner = BatchRunner(compiled, memory_a, batch_id="b", concurrency=1, lease_s=30.0, out=tmp_path / "out.jsonl")  # beats every 10 s
    queue_b = BatchQueue(memory_b, "b", lease_s=0.05)
    queue_b.host = "elsewhere/boot"  # B runs on another host: A's pid tells it nothing

    async def main() -> dict[str, Any]:
        run = asyncio.create_task(runner.run([{"query_id": "q1", "query": "What is 2+2?"}]))
        for _ in range(500):  # bounded: 10 s on a loaded machine
            if provider.hanging or run.done():
                break
            await asyncio.sleep(0.02)
        assert provider.hanging == 1 and not run.done(), "A did not reach its call"
        await asyncio.sleep(0.1)  # A's heartbeat is older than B's lease
        if memory_b.engine.dialect.name == "postgresql":  # A partitioned from the database: its lease is released
            await asyncio.to_thread(cut_leases, memory_b)
        reconciled = await asyncio.to_thread(queue_b.reconcile)
        assert reconciled.workers == (runner.queue.worker_id,) and reconciled.tasks == 1, reconciled
        at_retire = {
            "task": _rows(memory_b, "SELECT id, status, cost_usd FROM tasks"),
            "item": _rows(memory_b, "SELECT status, cost_usd FROM batch_items"),
        }
        if reclaim:
            assert [c.query_id for c in await asyncio.to_thread(queue_b.claim, 1)] == ["q1"]  # B takes it over
        provider.hang = False
        provider.release.set()  # A's hung call ends; A, alive, goes on
        report = await asyncio.wait_for(run, timeout=30)
        # its next claim found it retired: it stopped there, paying for nothing more (was: it claimed
        # the item it had just ended, handed over and waiting for its rerun, and paid for it again)
        assert report.stopped == RETIRED, report.stopped
        return at_retire

    try:
        at_retire = asyncio.run(main())
        memory_a.flush()
        (task,) = at_retire["task"]
        # B's reconcile: A's task interrupted at the worst case of its call in flight, and so its item
        assert task["status"] == "interrupted" and task["cost_usd"] == pytest.approx(WORST), at_retire
        assert at_retire["item"] == [{"status": "interrupted", "cost_usd": pytest.approx(WORST)}], at_retire  # was $0
        bill = provider.billed["q"]
        assert provider.calls["q"] == 2, dict(provider.calls)  # the hung call and its retry
        steps = _rows(memory_b, "SELECT id, step_index, cost_usd FROM steps WHERE task_id = :t", t=task["id"])
        # stored once: A's own step replaced the settling one (was: both, 3 W for a 2 W bill)
        assert [s["step_index"] for s in steps] == [0] and not steps[0]["id"].startswith("settled-"), steps
        assert sum(s["cost_usd"] for s in steps) == pytest.approx(bill), (steps, bill)
        # A's late finish leaves the task as the reconcile closed it, at its cost: the query's rerun
        # continues it under the budget it left (was: `done`, and the rerun got a fresh budget)
        (stored,) = _rows(memory_b, "SELECT status, cost_usd FROM tasks WHERE id = :t", t=task["id"])
        assert stored == {"status": "interrupted", "cost_usd": pytest.approx(bill)}, (stored, bill)
        assert queue_b.interrupted_tasks("q1") == {task["id"]: pytest.approx(bill)}
        audit = _rows(memory_b, "SELECT kind, detail FROM audit_events WHERE task_id = :t", t=task["id"])
        settled = [a["detail"] for a in audit if a["kind"] == "unsettled_attempt"]
        assert len(settled) == 1 and "replaced by the step its process stored after all" in settled[0], audit
        # A's finish did not take the item back: B's claim (running), or waiting for its rerun at its cost
        items = _rows(memory_b, "SELECT status, worker, attempts, cost_usd FROM batch_items")
        expected = {"status": "running", "worker": queue_b.worker_id, "attempts": 2} if reclaim else {
            "status": "interrupted", "worker": runner.queue.worker_id, "attempts": 1, "cost_usd": pytest.approx(bill)}
        assert [{k: item[k] for k in expected} for item in items] == [expected], items
        assert not (tmp_path / "out.jsonl").read_text(), "A wrote a line for a query it no longer holds"
        stats = memory_b.stats()
        assert stats["cost_usd"] == pytest.approx(bill), json.dumps(stats, default=str)
    finally:
        memory_a.close()
        memory_b.close()


@pytest.mark.parametrize("reclaim", [True, False], ids=["reclaimed", "waiting"])
def test_a_worker_retired_while_alive_has_its_call_charged_once_sqlite(provider: BillingProvider, tmp_path: Path, reclaim: bool) -> None:
    _run(provider, tmp_path, f"sqlite:///{tmp_path}/m.db", reclaim=reclaim)


@pytest.mark.postgres
def test_a_worker_retired_while_alive_has_its_call_charged_once_postgres(
    provider: BillingProvider, tmp_path: Path, postgres_url: str,  # noqa: F811
) -> None:
    from agentroute.memory.pgserver import create_database

    _run(provider, tmp_path, create_database(postgres_url, f"retired_{time.monotonic_ns()}"), reclaim=True)
