"""A task resumed from a checkpoint taken before a step books that step as the live run did.

Calls and large calls count provider *attempts* (issue 10): a step that was retried against a
refusing endpoint and then fell back made several calls, and a step on a large model made large
calls. A resume from a checkpoint taken before that step rebuilds its ledger from the memory; it
counted one call per stored step and no large call (a crash between the step and the next
checkpoint let the resumed task make calls and large calls the budget had already spent).
"""

from __future__ import annotations

import socket

from agentroute import Budget, Dispatcher, ModelCard, ModelPool, make_router
from agentroute.dispatch.run import TaskRun
from agentroute.memory import SQLMemory
from agentroute.pool import LoggedOutcome, ReplayBackend


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pool() -> ModelPool:
    """``remote``: a large model at an endpoint that refuses every connection; ``backup`` answers."""
    cards = [
        ModelCard(id="remote", backend="openai", model="m", base_url=f"http://127.0.0.1:{_closed_port()}/v1",
                  input_price=0.01, output_price=0.01, timeout_s=2.0, tier="large"),
        ModelCard(id="backup", backend="replay", input_price=1, output_price=1),
    ]  # fmt: skip
    return ModelPool(cards, {"replay": ReplayBackend([LoggedOutcome("q0", "backup", 1.0, 0.002, "backup answer")])})


async def test_a_resume_from_before_a_retried_step_books_its_attempts(tmp_path):
    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        dispatcher = Dispatcher(_pool(), make_router("cheapest"), memory=memory, retries=2, backoff_s=0.01)
        run = dispatcher.start("q", query_id="q0", budget=Budget(calls=20, large_calls=10))
        before = run.checkpoint()
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hello", models=["remote", "backup"])
        assert step.status == "ok" and step.agent.model == "backup"
        live = run.ledger.spent
        assert live["calls"] == 4 and live["large_calls"] == 3  # three tries of remote, then backup
        memory.flush()
        resumed = TaskRun.from_checkpoint(before, memory)
        assert resumed.ledger.spent["calls"] == live["calls"]
        assert resumed.ledger.spent["large_calls"] == live["large_calls"]
        assert resumed.ledger.spent_usd == live["usd"]
