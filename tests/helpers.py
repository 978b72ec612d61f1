"""Small builders shared by tests: a replay pool over hand-written logged outcomes."""

from __future__ import annotations

import asyncio
import threading

from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend
from agentroute.types import Completion, CompletionRequest


def replay_pool(n: int = 50, *, small_cost: float = 0.001, large_cost: float = 0.01) -> ModelPool:
    """Two replay models: ``small`` is right on even queries, ``large`` always; ids ``q0..q{n-1}``."""
    cards = [
        ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1, tier="small"),
        ModelCard(id="large", backend="replay", input_price=10, output_price=10, tier="large"),
    ]
    outcomes = [
        LoggedOutcome(f"q{i}", m, float(m == "large" or i % 2 == 0), small_cost if m == "small" else large_cost, f"{m} says {i}")
        for i in range(n)
        for m in ("small", "large")
    ]
    return ModelPool(cards, {"replay": ReplayBackend(outcomes)})


async def serve_on_loopback(app) -> tuple[str, object]:
    """Start an aiohttp ``app`` on 127.0.0.1 (a free port): ``(root URL, runner)``; the caller
    stops it with ``await runner.cleanup()``."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", runner  # type: ignore[union-attr]


def logged_memory(url: str, n: int) -> None:
    """``n`` tasks (``question i``, ids ``q0..``) served on :func:`replay_pool` by the ``random``
    router into the memory at ``url``: a memory with logged, scored traffic to train from. Task ids
    are fixed, so the random router's draws (keyed by task id) are the same traffic on every run."""
    import asyncio

    from agentroute import AgentGraph, make_router
    from agentroute.memory import SQLMemory

    with SQLMemory(url) as memory:
        app = AgentGraph("one").add_role("executor", prompt="p").compile(pool=replay_pool(), router=make_router("random"), memory=memory)
        items = [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"logged-{i:04d}"} for i in range(n)]
        asyncio.run(app.arun_many(items))


class NeverAnswers(ReplayBackend):
    """A provider whose calls never answer; ``started`` is set when a call begins and ``cancelled``
    when the caller gives it up."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.cancelled = threading.Event(), threading.Event()

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")
