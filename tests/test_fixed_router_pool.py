"""``make_router("fixed", model=...)`` from Python with a model the pool does not offer is an error
naming the model and the pool's models — at ``compile`` (the rule the CLI applies), else at the
first route — never every step sent to the cheapest model without a word. A model of the pool that
a step cannot afford still falls back to the cheapest candidate. Real graph, real dispatcher, the
replay pool (``small``, ``large``).
"""

from __future__ import annotations

import asyncio

import pytest

from agentroute import AgentGraph, Budget, Dispatcher, make_router
from agentroute.errors import ConfigurationError
from agentroute.routers.base import check_pool
from agentroute.types import Agent, RouteContext
from tests.helpers import replay_pool


def test_compile_refuses_a_fixed_model_the_pool_does_not_offer() -> None:
    graph = AgentGraph("qa").add_role("executor", prompt="answer")
    # was: compiled, and every step went to 'small' (the cheapest)
    with pytest.raises(ConfigurationError, match=r"fixed: model 'typo' is not in the pool; its models: large, small$"):
        graph.compile(pool=replay_pool(), router=make_router("fixed", model="typo"))
    with pytest.raises(ConfigurationError, match=r"'smal' is not in the pool \(did you mean 'small'\?\)"):
        graph.compile(pool=replay_pool(), router=make_router("fixed", model="smal"))
    with pytest.raises(ConfigurationError, match=r"model 'large' has no strategy 'vote' \(it has: direct\)"):
        graph.compile(pool=replay_pool(), router=make_router("fixed", model="large", strategy="vote"))
    app = graph.compile(pool=replay_pool(), router=make_router("fixed", model="large"), budget=Budget(calls=2))
    assert app.run("q", query_id="q1").steps[0].agent.model == "large"


def test_check_pool_is_the_one_rule() -> None:
    with pytest.raises(ConfigurationError, match="not in the pool"):
        check_pool(make_router("fixed", model="typo"), [Agent(model="small"), Agent(model="large")])
    assert check_pool(make_router("fixed", model="large"), [Agent(model="small"), Agent(model="large")]) == []


def test_the_first_route_refuses_it_when_nothing_checked_it() -> None:
    pool = replay_pool()
    cards = {card.id: card for card in pool}
    router = make_router("fixed", model="typo")
    ctx = RouteContext(query="q", candidates=[Agent(model="small")], cards=cards)
    with pytest.raises(ConfigurationError, match=r"'typo' is not in the pool; its models: large, small"):
        router.route(ctx)
    # a model of the pool left out of this step's candidates (not affordable): the cheapest, as before
    assert make_router("fixed", model="large").route(ctx).agents[0].model == "small"

    dispatcher = Dispatcher(pool, router)  # a dispatcher built by hand: no compile-time check
    run = dispatcher.start("q", budget=Budget(calls=1))
    asyncio.run(dispatcher.step(run, role="executor", stage="execute", prompt="", input="q0"))
    errors = [e for e in run.context["audit"] if e.kind == "router_error"]
    assert errors and "'typo' is not in the pool" in str(errors[0].detail)  # was: no word at all
