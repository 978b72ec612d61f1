"""A Router-R1 task that the turn limit ends stays ``done`` when the budget refused one route while another
agent stayed affordable: the budget did not end it (the policy went on routing to the one it could pay).
Was (e1edbb9): ``budget_exhausted``, as if the budget had stopped the routing."""

from __future__ import annotations

from agentroute.budget import Budget
from agentroute.routers.router_r1 import LoopSettings
from tests.test_router_r1 import ScriptedPolicy, run_graph

LARGE = "<think>a</think><route> large: q </route>"  # over a $0.001 budget: 8 tokens out at $400/1M
SMALL = "<think>b</think><route> small: q </route>"


def test_a_refused_route_with_an_affordable_agent_left_ends_done_at_the_turn_limit():
    policy = ScriptedPolicy([LARGE, SMALL, SMALL, SMALL])  # never an <answer>
    result, backend = run_graph(policy, Budget(usd=0.001), LoopSettings(max_turns=3))
    kinds = [t["kind"] for t in result.state["context"]["router_r1"]["turns"]]
    assert kinds[:3] == ["refused", "route", "route"] and len(backend.calls) == 2
    assert "affordable: small" in result.state["context"]["router_r1"]["turns"][0]["information"]
    assert result.status == "done" and result.answer == "small says hi"


def test_a_refused_route_with_nothing_affordable_left_ends_budget_exhausted():
    policy = ScriptedPolicy([LARGE, SMALL])
    result, backend = run_graph(policy, Budget(usd=1e-6), LoopSettings(max_turns=3))
    assert "nothing is affordable" in result.state["context"]["router_r1"]["turns"][0]["information"]
    assert result.status == "budget_exhausted" and backend.calls == []
