"""Issue 10 req 6, checked on the wire: a router whose ``route`` raises costs the task one call to
the cheapest affordable candidate (not one to each model in turn), an audit ``router_error`` naming
it, and the task goes on. A real compiled graph, a real SQLite memory, an OpenAI-compatible server
on loopback; sync (``run``, also in a running event loop) and async (``arun``), the router on the loop and off it (a slow router).
Also: a graph compiled again over a pool whose prices changed (a notebook's edited cards) routes by
the new cards, though decisions are interned for the old pool's equal agents (an agent is its role,
model and strategy; its card and price are the pool's, looked up by key). Guards: both held at
9dcfd77 already, and hold the dispatcher's one-agent fast path (4ac7fdc) to them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentroute import AgentGraph, Budget, ModelCard, ModelPool, make_router
from agentroute.memory import SQLMemory
from agentroute.routers.base import Router
from agentroute.types import Decision, RouteContext
from tests.fixtures_reply_server import ReplyServer

PRICES = {"echo-big": 3.0, "echo-small": 1.0, "echo-mid": 2.0}  # echo: the server answers with the model's name


class Raising(Router):
    name = "raising"

    def route(self, ctx: RouteContext) -> Decision:
        raise RuntimeError("scores are NaN")


def _pool(url: str, prices: dict[str, float]) -> ModelPool:
    return ModelPool([ModelCard(id=m, backend="openai", model=m, base_url=url, input_price=p, output_price=p,
                                max_tokens=8, timeout_s=10, strategies=("direct",)) for m, p in prices.items()])  # fmt: skip


async def _in_a_cell(call: Any) -> Any:
    return call()


def _graph() -> AgentGraph:
    return AgentGraph("qa").add_role("planner", prompt="Plan.").add_role("executor", prompt="Answer.").add_edge("planner", "executor")


@pytest.mark.parametrize("path", ["sync", "notebook", "async", "off-loop"])
def test_a_raising_router_costs_one_call_to_the_cheapest_and_the_task_goes_on(tmp_path: Path, path: str) -> None:
    memory = SQLMemory(f"sqlite:///{tmp_path / 'm.db'}")
    with ReplyServer() as provider:
        app = _graph().compile(pool=_pool(provider.url, PRICES), router=Raising(), budget=Budget(usd=1.0), memory=memory)
        if path == "off-loop":
            app.dispatcher._route_off_loop = True  # as after three slow routes: route() runs in a worker thread
        if path == "notebook":  # a sync call inside a running event loop, as in a Jupyter cell
            result = asyncio.run(_in_a_cell(lambda: app.run("q")))
        else:
            result = app.run("q") if path == "sync" else asyncio.run(app.arun("q"))
        sent = [r["model"] for r in provider.requests]
    assert result.status == "done" and result.answer == "echo-small"
    assert sent == ["echo-small", "echo-small"]  # one call a step, to the cheapest: none to echo-mid or echo-big
    audits = [(e.kind, e.stage, e.detail) for e in memory.audit_events(result.task.id)]
    assert audits == [("router_error", s, "RuntimeError: scores are NaN; using executor:echo-small:direct".replace("executor", s, 1))
                      for s in ("planner", "executor")]  # fmt: skip
    memory.close()


@pytest.mark.parametrize(("new_price", "chosen"), [(1.5, "echo-small"), (5.0, "echo-mid")])
def test_a_graph_compiled_again_over_repriced_cards_routes_and_bills_by_the_new_cards(new_price: float, chosen: str) -> None:
    """1.5: the same agent wins again, its decision the one interned for the first pool's equal agent
    (the dispatcher's fast path matches it by key); 5.0: echo-small is now the dearest."""
    with ReplyServer() as provider:
        first = _graph().compile(pool=_pool(provider.url, PRICES), router=make_router("cheapest"))
        assert first.run("q").answer == "echo-small"
        repriced = {**PRICES, "echo-small": new_price}  # the card edited in a notebook cell, the graph compiled again
        again = _graph().compile(pool=_pool(provider.url, repriced), router=make_router("cheapest"))
        result: Any = again.run("q")
        sent = [r["model"] for r in provider.requests]
    assert sent == ["echo-small"] * 2 + [chosen] * 2 and result.answer == chosen
    step = result.steps[-1]
    assert step.agent.key == step.decision.agent.key == f"executor:{chosen}:direct"
    if chosen == "echo-small":  # the interned decision names an earlier pool's agent; the step runs this pool's
        assert step.decision.agent is not step.agent
    # billed at the new card's price: (prompt + completion tokens) × its USD per million
    assert step.cost_usd == pytest.approx((step.tokens_in + step.tokens_out) * repriced[chosen] / 1e6)
