"""Review of the hot-path commits (f47f1af … 7f08402): user paths their short cuts must keep.

A backend of the user's own that pads a replay log's counts or prices still reserves its own
numbers; a hook set on a router after it was handed to the dispatcher is still called; LangGraph's
dict channels keep their behaviour where the fast channel class cannot be sure of the layout.
"""

from __future__ import annotations

from typing import Any

from agentroute.budget import Budget
from agentroute.dispatch.dispatcher import Dispatcher
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend
from agentroute.routers.baselines import CheapestRouter

CARD = ModelCard(id="m", backend="replay", input_price=1.0, output_price=1.0)
LOG = [LoggedOutcome("q1", "m", 1.0, 0.5, "logged answer", tokens_in=7)]


class PaddedCounts(ReplayBackend):
    """A replay log whose provider bills 100 more prompt tokens than it logged (a system preamble)."""

    def prompt_tokens(self, request: Any, card: ModelCard) -> int:
        return super().prompt_tokens(request, card) + 100


class WithFee(ReplayBackend):
    """A replay log served through a proxy that adds $0.25 to every call."""

    def worst_case_usd(self, request: Any, card: ModelCard, prompt_tokens: int | None = None) -> float:
        return super().worst_case_usd(request, card, prompt_tokens) + 0.25


def _plan(backend: ReplayBackend) -> Any:
    dispatcher = Dispatcher(ModelPool([CARD], {"replay": backend}), CheapestRouter())
    run = dispatcher.start("question", budget=Budget(usd=10.0))
    [plan] = dispatcher._plans(run, "executor", "p", "x", None, None, "q1")
    return plan


def test_a_replay_subclass_reserves_its_own_prompt_count() -> None:
    plan = _plan(PaddedCounts(LOG))
    assert plan.sample.tokens == 107 + plan.request.max_tokens  # was 7 + max_tokens: the override unseen


def test_a_replay_subclass_reserves_its_own_price() -> None:
    assert _plan(WithFee(LOG)).sample.usd == 0.75  # was 0.5: the fee unseen


async def test_a_budget_below_a_subclass_price_refuses_the_step() -> None:
    """$0.6 covers the log's $0.5 but not the proxy's $0.75: nothing is called."""
    dispatcher = Dispatcher(ModelPool([CARD], {"replay": WithFee(LOG)}), CheapestRouter())
    run = dispatcher.start("question", budget=Budget(usd=0.6), query_id="q1")
    step = await dispatcher.step(run, role="executor", stage="s", prompt="p", input="x")
    assert step is None or step.status != "ok"
    assert run.ledger.spent_usd == 0.0 and run.exhausted


def _replay_pool(n: int = 2) -> ModelPool:
    return ModelPool([CARD], {"replay": ReplayBackend([LoggedOutcome(f"q{i}", "m", 1.0, 0.0, f"a{i}") for i in range(n)])})


async def _one_task(dispatcher: Dispatcher, query_id: str) -> None:
    run = dispatcher.start("question", query_id=query_id)
    assert (await dispatcher.step(run, role="executor", stage="s", prompt="p", input="x")).status == "ok"  # type: ignore[union-attr]
    dispatcher.finish(run)


async def test_an_observe_hook_set_on_the_router_later_is_called() -> None:
    """A notebook sets ``router.observe`` after compiling: the steps from then on reach it."""
    router = CheapestRouter()
    dispatcher = Dispatcher(_replay_pool(), router)
    await _one_task(dispatcher, "q0")
    seen: list[str] = []
    router.observe = lambda step, task=None: seen.append(step.output)  # type: ignore[method-assign]
    await _one_task(dispatcher, "q1")
    assert seen == ["a1", "a1"]  # was []: the hooks were looked up once, when the router was set


async def test_a_hook_added_to_the_router_class_later_is_called() -> None:
    class Later(CheapestRouter):
        pass

    dispatcher = Dispatcher(_replay_pool(), Later())
    escalated: list[str] = []

    def escalate(self: Any, ctx: Any, step: Any) -> bool:
        escalated.append(step.agent.key)
        return False

    Later.escalate = escalate  # type: ignore[method-assign]
    await _one_task(dispatcher, "q0")
    assert escalated == ["executor:m:direct"]
