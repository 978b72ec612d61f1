"""A provider call in flight when the process is killed is billed; the resumed task counts it.

A worker process runs two budgeted tasks of an ``AgentGraph`` (SQLite checkpointer, SQLite or
PostgreSQL memory) against a loopback OpenAI-compatible server whose first calls hang: the server
bills each one its worst case (the model ran to ``max_tokens``; the reply never came). The worker
is killed (``SIGKILL``) while both calls hang; this process then resumes both threads with
``app.resume(config)``, as a new worker would.

One call's worst case is ``W`` = 100 tokens × $10/M = $0.001. Task ``tight`` has ``usd=1.5 W``:
the hung call leaves no room for another, so it ends ``budget_exhausted`` having been billed ``W``.
Before, its ledger was rebuilt from its stored steps only (none): the resume made a second call
and the provider billed ``2 W = $0.002`` against a ``$0.0015`` limit. Task ``roomy`` has
``usd=2.5 W``: its resume makes its call and ends ``done``, billed ``2 W``. Task ``late`` (``usd=2.5 W``)
is killed in its second role, after a checkpoint: was billed ``3 W``, now ``2 W``, ``budget_exhausted``. Each task's recorded cost
is its bill: the lost call is stored as a failed step at its worst case, and audited.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures_billing_provider import BillingProvider
from tests.fixtures_postgres import postgres_url  # noqa: F401 - a fixture

MAX_TOKENS = 100  # what a call asks for: the card says 200, the `direct` strategy asks half
OUT_PRICE = 10.0  # USD per 1M output tokens; input is free, so a call's worst case is exact
WORST = MAX_TOKENS * OUT_PRICE / 1e6  # $0.001
#: Each task's limit and roles; every ``executor`` call hangs in the killed worker.
TASKS = {
    "tight": (1.5 * WORST, ("executor",)),  # killed in its first node: reopened from the memory
    "roomy": (2.5 * WORST, ("executor",)),
    "late": (2.5 * WORST, ("planner", "executor")),  # killed in its second node: resumed from its checkpoint
}
LIMITS = {name: limit for name, (limit, _) in TASKS.items()}
ROOT = Path(__file__).resolve().parents[1]


def build(url: str, memory: Any, saver: Any, roles: tuple[str, ...]) -> Any:
    """The graph both workers run: ``roles`` in a chain, one model at ``url``."""
    from agentroute import AgentGraph, make_router
    from agentroute.pool import ModelCard, ModelPool

    card = ModelCard(id="m", backend="openai", model="m", base_url=url, input_price=0.0, output_price=OUT_PRICE,
                     max_tokens=2 * MAX_TOKENS, timeout_s=60, context_window=4096)
    graph = AgentGraph("crash")
    for role in roles:
        graph.add_role(role, prompt="Answer." if role == "executor" else "Plan.")
    for first, then in itertools.pairwise(roles):
        graph.add_edge(first, then)
    return graph.compile(pool=ModelPool([card]), router=make_router("cheapest"), memory=memory, checkpointer=saver)


def crash_worker(url: str, memory_url: str, saver_path: str, run: str) -> None:
    """The worker that is killed: every task's executor call hangs until then."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from agentroute.memory import SQLMemory

    memory = SQLMemory(memory_url)
    with SqliteSaver.from_conn_string(saver_path) as saver:
        threads = [
            threading.Thread(target=build(url, memory, saver, roles).invoke, args=(
                {"query": f"{name}-{run}", "budget": {"usd": limit}}, {"configurable": {"thread_id": f"{name}-{run}"}},
            ))
            for name, (limit, roles) in TASKS.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


@pytest.fixture
def provider() -> Iterator[BillingProvider]:
    """Bills by the query a call carries; every executor call hangs."""
    with BillingProvider(key=lambda body: str(body["messages"][-1]["content"]), hangs=lambda _, system: "Answer." in system,
                         out_price=OUT_PRICE) as server:  # fmt: skip
        yield server


def _crash_and_resume(provider: BillingProvider, memory_url: str, saver_path: Path) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    code = "import sys; from tests.test_budget_crash_in_flight import crash_worker; crash_worker(*sys.argv[1:])"
    worker = subprocess.Popen([sys.executable, "-c", code, provider.url, memory_url, str(saver_path), run], cwd=os.getcwd())
    engine = sa.create_engine(memory_url)
    try:
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a wait
        while time.monotonic() < deadline and worker.poll() is None:  # both calls hang, both tasks stored
            if provider.hanging == len(LIMITS):
                with engine.connect() as conn:
                    stored = conn.execute(sa.text("SELECT count(*) FROM tasks WHERE query LIKE :q"), {"q": f"%-{run}"}).scalar()
                if stored == len(LIMITS):
                    break
            time.sleep(0.02)
        assert worker.poll() is None and provider.hanging == len(LIMITS), "the worker did not reach its hanging calls"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        engine.dispose()
    provider.hang = False

    from langgraph.checkpoint.sqlite import SqliteSaver

    from agentroute.memory import SQLMemory

    outcome: dict[str, Any] = {}
    with SQLMemory(memory_url) as memory, SqliteSaver.from_conn_string(str(saver_path)) as saver:
        for name, (_, roles) in TASKS.items():
            app, config = build(provider.url, memory, saver, roles), {"configurable": {"thread_id": f"{name}-{run}"}}
            checkpointed = "ledger" in (app.get_state(config).values.get("agentroute") or {})  # else: a request
            result = app.resume(config)
            memory.flush()
            events = memory.audit_events(result.task.id)
            outcome[name] = {
                "status": result.task.status, "billed": provider.billed[f"{name}-{run}"], "cost": result.task.cost_usd,
                "unsettled": [e for e in events if e.kind == "unsettled_attempt" and "unsettled" in e.detail], "checkpointed": checkpointed,
            }
    return outcome


def _check(outcome: dict[str, Any]) -> None:
    tight, roomy, late = outcome["tight"], outcome["roomy"], outcome["late"]
    # was: tight billed $0.002 against its $0.0015 limit, late $0.003 against $0.0025 (both done):
    # the hung call was forgotten, and paid for again
    for name, task in outcome.items():
        assert task["billed"] <= LIMITS[name] + 1e-12, outcome
        assert task["unsettled"], outcome  # the audit names the charged attempt
        assert task["cost"] == pytest.approx(task["billed"]), outcome  # the record holds it: a failed step
    assert tight["status"] == late["status"] == "budget_exhausted", outcome
    assert late["checkpointed"] and not tight["checkpointed"], outcome  # both ways a task resumes
    assert roomy["status"] == "done" and roomy["billed"] == pytest.approx(2 * WORST), outcome


def test_a_call_in_flight_at_a_crash_counts_on_resume_sqlite(provider: BillingProvider, tmp_path: Path) -> None:
    _check(_crash_and_resume(provider, f"sqlite:///{tmp_path}/memory.db", tmp_path / "ckpt.db"))


def test_a_call_in_flight_at_a_crash_counts_on_resume_postgres(provider: BillingProvider, tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    _check(_crash_and_resume(provider, postgres_url, tmp_path / "ckpt.db"))
