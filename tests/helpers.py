"""Small builders shared by tests: a replay pool over hand-written logged outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend
from agentroute.types import Completion, CompletionRequest

POOL_YAML = (
    "models:\n  - {id: small, backend: replay, input_price: 0.1, output_price: 0.1, tier: small}\n"
    "  - {id: large, backend: replay, input_price: 10, output_price: 10, tier: large}\n"
)
""":func:`replay_pool`'s cards as a pool file (``--pool``) for the CLI."""


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


@contextlib.asynccontextmanager
async def tokenizing_server(server: Any) -> AsyncIterator[ModelCard]:
    """A vLLM-like server on loopback from ``server``'s ``tokenize`` and ``chat`` aiohttp handlers
    (``POST /tokenize``, ``POST /v1/chat/completions``): the ``openai`` card of its model ``m``
    ($1 a token each way, ``max_tokens`` 1), stopped on exit."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/tokenize", server.tokenize)
    app.router.add_post("/v1/chat/completions", server.chat)
    root, runner = await serve_on_loopback(app)
    try:
        yield ModelCard(id="m", backend="openai", model="m", base_url=f"{root}/v1", input_price=1.0,
                        output_price=1.0, max_tokens=1)  # fmt: skip
    finally:
        await runner.cleanup()  # type: ignore[attr-defined]


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


def flaky_outcomes(
    n: int,
    *,
    small_fails_on_odd: bool = True,
    outage_every: int | None = None,
    small_score: float = 1.0,
    large_score: float = 1.0,
) -> list[LoggedOutcome]:
    """Outcomes of :func:`replay_pool`'s models on ``q0..q{n-1}`` (``small`` $0.001 scoring
    ``small_score``, ``large`` $0.01 scoring ``large_score``) with gaps, where a call fails (no logged outcome):
    ``small`` on the odd queries if asked, every model on each ``outage_every``-th query (an outage)."""
    return [
        LoggedOutcome(f"q{i}", m, small_score if m == "small" else large_score, 0.001 if m == "small" else 0.01, "a")
        for i in range(n)
        for m in ("small", "large")
        if not (small_fails_on_odd and m == "small" and i % 2)
        and not (outage_every and i % outage_every == outage_every - 1)
    ]


def log_explored(url: str, n: int, outcomes: list[LoggedOutcome], graph: object = None, **compile_options: object) -> None:
    """``n`` tasks (``question i``, query ids ``q{i}``, task ids ``t{i:02d}``) of ``graph`` (default:
    one executor) on :func:`replay_pool`'s cards answering ``outcomes``, routed by an ``explore``
    router (ε 0.5 around ``cheapest``, seeded: the same traffic every run) into the memory at
    ``url``: logs with propensities for ``eval --from``."""
    from agentroute import AgentGraph
    from agentroute.memory import SQLMemory
    from agentroute.routers.explore import ExploreRouter

    graph = graph or AgentGraph("one").add_role("executor", prompt="p")
    with SQLMemory(url) as memory:
        app = graph.compile(  # type: ignore[attr-defined]
            pool=ModelPool(list(replay_pool(n)), {"replay": ReplayBackend(outcomes)}), memory=memory,
            router=ExploreRouter(base="cheapest", epsilon=0.5, seed=3), **compile_options,
        )  # fmt: skip
        items = [{"query": f"question {i}", "query_id": f"q{i}", "task_id": f"t{i:02d}"} for i in range(n)]
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


def billed_reply(model: str, prompt_tokens: int) -> dict[str, Any]:
    """A chat completion of one token ("ok") billing ``prompt_tokens``: the usage a provider reports."""
    return {
        "id": "c1", "object": "chat.completion", "created": 0, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
    }  # fmt: skip
