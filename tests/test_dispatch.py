import asyncio
import socket

import pytest

from agentroute import Budget, ConfigurationError, Dispatcher, ModelCard, ModelPool, StageMachine, make_router
from agentroute.dispatch import SkillBlocked, SkillRegistry, condition, has_key
from agentroute.pool import LoggedOutcome, ReplayBackend
from tests.helpers import replay_pool

# -- stage machine -------------------------------------------------------------------------------


def test_stage_machine_blocks_illegal_transitions_and_intents():
    sm = StageMachine(["plan", "solve", "verify"], transitions=[("plan", "solve"), ("solve", "verify")],
                      bindings={"planner": ["plan"], "verifier": ["verify"]})
    assert sm.check(None, "plan", intent="planner") is None
    assert "tasks start in 'plan'" in sm.check(None, "solve")
    assert "not allowed" in sm.check("plan", "verify")
    assert sm.check("solve", "solve") is None  # staying is legal
    assert "intent 'planner' is not allowed in stage 'solve'" in sm.check("plan", "solve", intent="planner")
    with pytest.raises(ConfigurationError, match="unknown stage"):
        sm.add_transition("plan", "nowhere")


async def test_dispatcher_blocks_and_audits_an_illegal_stage():
    pool = replay_pool()
    sm = StageMachine(["plan", "solve"], transitions=[("plan", "solve")], bindings={"executor": ["solve"]})
    dispatcher = Dispatcher(pool, make_router("cheapest"), stage_machine=sm)
    run = dispatcher.start("q", query_id="q0")
    assert await dispatcher.step(run, role="executor", stage="solve", prompt="", input="x") is None
    events = run.context["audit"]
    assert [e.kind for e in events] == ["stage_blocked"]
    assert "tasks start in 'plan'" in events[0].detail
    assert dispatcher.finish(run).status == "failed"


# -- skills ----------------------------------------------------------------------------------------


async def test_skill_preconditions_postconditions_and_stages():
    skills = SkillRegistry()
    skills.register("lookup", lambda ctx: ctx.setdefault("found", ctx["query"].upper()), stages=["execute"],
                    preconditions=[has_key("query")], postconditions=[has_key("found")])
    skills.register("broken", lambda ctx: None, postconditions=[condition("wrote result", lambda c: "result" in c)])
    assert await skills.invoke("lookup", {"query": "abc"}, stage="execute") == "ABC"
    with pytest.raises(SkillBlocked) as blocked:
        await skills.invoke("lookup", {}, stage="execute")
    assert blocked.value.kind == "precondition_failed"
    with pytest.raises(SkillBlocked) as blocked:
        await skills.invoke("lookup", {"query": "a"}, stage="plan")
    assert blocked.value.kind == "skill_blocked"
    with pytest.raises(SkillBlocked) as blocked:
        await skills.invoke("broken", {}, stage="execute")
    assert blocked.value.kind == "postcondition_failed"
    with pytest.raises(ConfigurationError, match="unknown skill 'nope'; known: broken, lookup"):
        await skills.invoke("nope", {}, stage="execute")


# -- budgets -------------------------------------------------------------------------------------


async def test_budget_too_small_for_any_step_ends_budget_exhausted_without_a_call():
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"))
    run = dispatcher.start("q", query_id="q0", budget=Budget(usd=0.0005))
    assert await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x") is None
    task = dispatcher.finish(run)
    assert task.status == "budget_exhausted" and task.cost_usd == 0
    assert run.context["audit"][0].kind == "budget_blocked"


async def test_router_only_sees_affordable_candidates_and_partial_answer_is_kept():
    dispatcher = Dispatcher(replay_pool(), make_router("strongest"))
    run = dispatcher.start("q", query_id="q2", budget=Budget(usd=0.0125))
    first = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
    second = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
    third = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
    assert (first.agent.model, second.agent.model) == ("large", "small")  # large no longer fits
    assert third is not None and third.agent.model == "small"
    assert await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x") is None
    task = dispatcher.finish(run)
    assert task.status == "budget_exhausted" and task.answer == "small says 2"
    assert task.cost_usd <= 0.0125


async def test_concurrent_steps_of_one_task_never_overspend():
    dispatcher = Dispatcher(replay_pool(), make_router("random", seed=3))
    run = dispatcher.start("q", query_id="q1", budget=Budget(usd=0.05))
    steps = await asyncio.gather(*(dispatcher.step(run, role="executor", stage="execute", prompt="", input=str(i)) for i in range(200)))
    assert sum(s.cost_usd for s in steps if s is not None and s.status == "ok") <= 0.05 + 1e-12
    assert run.ledger.spent_usd <= 0.05 + 1e-12
    assert any(s is None for s in steps)


async def test_large_call_cap():
    dispatcher = Dispatcher(replay_pool(), make_router("strongest"))
    run = dispatcher.start("q", query_id="q1", budget=Budget(large_calls=2))
    models = [(await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")).agent.model for _ in range(4)]
    assert models == ["large", "large", "small", "small"]


async def test_router_choosing_outside_its_candidates_is_audited_and_the_cheapest_runs():
    from agentroute.routers.base import Router
    from agentroute.types import Agent, Decision

    class Rogue(Router):
        name = "rogue"

        def route(self, ctx):
            return Decision(agents=[Agent(model="gpt-9")])

    dispatcher = Dispatcher(replay_pool(), Rogue())
    run = dispatcher.start("q", query_id="q0")
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
    assert step.status == "ok" and step.agent.model == "small"
    [event] = run.context["audit"]
    assert event.kind == "router_error" and "outside its candidates" in event.detail


# -- failures: retries, fallback, unreachable endpoints -------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mixed_pool(base_url: str, *, timeout_s: float = 5.0) -> ModelPool:
    cards = [
        ModelCard(id="remote", backend="openai", model="m", base_url=base_url, input_price=0.01, output_price=0.01, timeout_s=timeout_s),
        ModelCard(id="backup", backend="replay", input_price=1, output_price=1),
    ]
    return ModelPool(cards, {"replay": ReplayBackend([LoggedOutcome("q0", "backup", 1.0, 0.002, "backup answer")])})


async def test_unreachable_endpoint_retries_then_falls_back_within_budget():
    dispatcher = Dispatcher(mixed_pool(f"http://127.0.0.1:{closed_port()}/v1"), make_router("cheapest"), backoff_s=0.01)
    run = dispatcher.start("q", query_id="q0", budget=Budget(usd=0.01))
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hello")
    assert step.status == "ok" and step.agent.model == "backup" and step.output == "backup answer"
    kinds = [e.kind for e in run.context["audit"]]
    assert kinds == ["retry", "retry", "step_failed", "fallback"]
    failed = [s for s in run.steps if s.status == "failed"]
    assert len(failed) == 1 and failed[0].agent.model == "remote" and failed[0].cost_usd == 0
    assert run.ledger.spent_usd <= 0.01


async def test_unreachable_endpoint_without_fallback_fails_the_task_and_records_it():
    pool = mixed_pool(f"http://127.0.0.1:{closed_port()}/v1")
    dispatcher = Dispatcher(pool, make_router("cheapest"), backoff_s=0.01)
    run = dispatcher.start("q", query_id="q0")
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x", models=["remote"])
    assert step.status == "failed" and "remote" in step.error
    task = dispatcher.finish(run)
    assert task.status == "failed"
    assert [s.status for s in run.steps] == ["failed"]


async def test_hanging_endpoint_times_out_and_falls_back():
    writers = []

    async def hang(reader, writer):  # never answers
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = mixed_pool(f"http://127.0.0.1:{port}/v1", timeout_s=0.3)
    try:
        dispatcher = Dispatcher(pool, make_router("cheapest"), retries=1, backoff_s=0.01)
        run = dispatcher.start("q", query_id="q0")
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
        assert step.agent.model == "backup" and step.status == "ok"
        assert "timed out" in next(e.detail for e in run.context["audit"] if e.kind == "step_failed")
    finally:
        await pool.aclose()
        server.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()


async def test_cascade_escalates_on_low_confidence():
    from agentroute.routers import CascadeRouter

    router = CascadeRouter(threshold=0.5, confidence_fn=lambda step: 0.1 if step.agent.model == "small" else 0.9)
    dispatcher = Dispatcher(replay_pool(), router)
    run = dispatcher.start("q", query_id="q3")
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
    assert [s.agent.model for s in run.steps] == ["small", "large"]
    assert step.agent.model == "large" and run.ledger.spent_usd == pytest.approx(0.011)


async def test_token_budget_reserves_the_chat_template_tokens():
    """A step that fits on its bare text but not with the chat template around it is not called."""
    from agentroute.pool.backends.openai import OpenAIBackend, prompt_overhead
    from agentroute.strategies import get_strategy
    from agentroute.types import CompletionRequest

    card = ModelCard(id="remote", backend="openai", base_url=f"http://127.0.0.1:{closed_port()}/v1",
                     input_price=1, output_price=1, max_tokens=16)
    dispatcher = Dispatcher(ModelPool([card]), make_router("cheapest"), retries=0)
    direct = get_strategy("direct")
    messages = [{"role": "system", "content": direct.system_prompt("answer")}, {"role": "user", "content": "hello there"}]
    bare = OpenAIBackend().count_tokens(CompletionRequest(model="remote", messages=messages).prompt_text, card)
    limit = int(card.max_tokens * direct.max_tokens_factor)
    tokens = bare + limit + prompt_overhead(messages) - 1
    assert bare + limit <= tokens  # it would fit if the template were not counted
    run = dispatcher.start("q", budget=Budget(tokens=tokens))
    assert await dispatcher.step(run, role="executor", stage="execute", prompt="answer", input="hello there") is None
    assert run.exhausted and run.steps == [] and run.context["audit"][0].kind == "budget_blocked"


def test_plain_decisions_are_shared_and_immutable():
    from pydantic import ValidationError

    from agentroute.routers.base import decide
    from agentroute.types import RouteContext

    router = make_router("cheapest")
    ctx = RouteContext(query="q", candidates=replay_pool().agents("executor"))
    first, again = decide(router, ctx, 0, why="cheapest"), decide(router, ctx, 0, why="cheapest")
    assert first is again and first.agent == ctx.candidates[0] and first.weights == [1.0]
    assert decide(router, ctx, 1, why="cheapest") is not first
    with pytest.raises(ValidationError):
        first.why = "changed"
    scored = decide(router, ctx, 0, why="x", scores={"a": 1.0})
    assert scored is not decide(router, ctx, 0, why="x", scores={"a": 1.0}) and scored.scores == {"a": 1.0}
