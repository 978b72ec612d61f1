"""A Router-R1 policy that never writes ``<answer>`` and routes until the task's budget stops it: the
task ends ``budget_exhausted`` with its best partial answer, and the bill is the calls that ran.

Was: ``done`` — a fallback answer (the last agent reply, or the policy's own untagged text) looked
like a finished task, unlike any other graph whose step the budget refused."""

from __future__ import annotations

import pytest

from agentroute.budget import Budget
from agentroute.routers.router_r1 import LoopSettings
from tests.test_router_r1 import ScriptedPolicy, run_graph

ROUTES = ["<think>a</think><route> small: q </route>"] * 12  # never an <answer>


def test_one_call_budget_ends_budget_exhausted_with_the_agents_reply():
    result, backend = run_graph(ScriptedPolicy(ROUTES), Budget(calls=1), LoopSettings(max_turns=10))
    assert result.status == "budget_exhausted" and result.answer == "small says hi"
    assert len(backend.calls) == 1 and result.cost_usd == pytest.approx((10 * 1.0 + 4 * 2.0) / 1e6)


def test_a_budget_that_pays_no_call_ends_budget_exhausted_with_nothing_billed():
    result, backend = run_graph(ScriptedPolicy(ROUTES), Budget(usd=1.0, tokens=30), LoopSettings(max_turns=10))
    kinds = [t["kind"] for t in result.state["context"]["router_r1"]["turns"]]
    assert result.status == "budget_exhausted" and kinds == ["refused", "final"]
    assert backend.calls == [] and result.cost_usd == 0.0


def test_an_answer_after_the_budget_is_spent_is_a_done_task():
    policy = ScriptedPolicy([ROUTES[0], "<think>b</think><answer>Frank Herbert</answer>"])
    result, backend = run_graph(policy, Budget(calls=1))
    assert result.status == "done" and result.answer == "Frank Herbert" and len(backend.calls) == 1


def test_the_turn_limit_without_a_budget_stop_stays_done():
    result, backend = run_graph(ScriptedPolicy(ROUTES), Budget(usd=1.0), LoopSettings(max_turns=2))
    assert result.status == "done" and result.answer == "small says hi" and len(backend.calls) == 2
