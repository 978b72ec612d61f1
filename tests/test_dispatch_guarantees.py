"""The dispatcher's promises at the provider's side: every attempt reserved, usage distrusted,
overruns audited, time budgets as deadlines, routers and postconditions that cannot take a task down.

Provider behaviour comes from a real HTTP server on loopback (aiohttp) that counts what it was
asked, or from a scripted :class:`Backend` — the public extension point — where only the reply's
usage matters.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from agentroute import Budget, Dispatcher, ModelCard, ModelPool, StageMachine, make_router
from agentroute.dispatch import SkillBlocked, SkillRegistry
from agentroute.pool.backends.base import Backend
from agentroute.routers.base import Router
from agentroute.types import Completion, Step
from tests.helpers import replay_pool, serve_on_loopback

# -- a loopback OpenAI-compatible server that fails on command and counts every request ----------


class Provider:
    """``mode``: ``ok`` | ``500`` | ``hang``; ``requests`` counts every request received."""

    def __init__(self, mode: str = "ok"):
        self.mode, self.requests = mode, 0
        self.release = asyncio.Event()  # set at teardown: a hanging request then ends

    tokenized = 0
    tokenize_delay = 0.0  # seconds /tokenize takes to answer

    async def tokenize(self, request: web.Request) -> web.Response:  # vLLM's: the server counts its own prompts
        self.tokenized += 1
        await asyncio.sleep(self.tokenize_delay)
        return web.json_response({"count": 21, "max_model_len": 4096, "tokens": list(range(21))})

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        if self.mode == "500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if self.mode == "hang":
            await asyncio.wait_for(self.release.wait(), 30)
        usage = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
        if not body.get("stream"):
            return web.json_response({
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
                "usage": usage,
            })
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        for chunk in (
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris"}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": usage},
        ):
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.fixture
async def provider():
    prov = Provider()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", prov.handle)
    app.router.add_post("/tokenize", prov.tokenize)
    root, runner = await serve_on_loopback(app)
    prov.url = f"{root}/v1"
    try:
        yield prov
    finally:
        prov.release.set()
        while OPENED:  # the pools' clients and their connections, as a caller closes them
            await OPENED.pop().aclose()
        await runner.cleanup()


OPENED: list[ModelPool] = []  # the pools built by http_pool, closed by the provider fixture


def http_pool(url: str, *, timeout_s: float = 5.0, strategies=("direct",), ids=("remote",)) -> ModelPool:
    pool = ModelPool([
        ModelCard(id=i, backend="openai", model="m", base_url=url, input_price=1.0, output_price=2.0,
                  max_tokens=8, timeout_s=timeout_s, strategies=list(strategies))
        for i in ids
    ])
    OPENED.append(pool)
    return pool


async def test_calls_budget_counts_every_provider_attempt_retries_and_fallbacks_included(provider):
    provider.mode = "500"
    dispatcher = Dispatcher(http_pool(provider.url, ids=("a", "b")), make_router("cheapest"), retries=2, backoff_s=0.001)
    run = dispatcher.start("q", budget=Budget(calls=1))
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
    assert provider.requests == 1  # was 3: one reservation covered the retries
    assert step.status == "failed" and run.ledger.spent["calls"] == 1
    assert dispatcher.finish(run).status == "budget_exhausted"


async def test_self_consistency_samples_are_each_reserved(provider):
    dispatcher = Dispatcher(http_pool(provider.url, strategies=("sc@3",)), make_router("cheapest"))
    run = dispatcher.start("q", budget=Budget(calls=2))
    assert await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi") is None
    assert provider.requests == 0  # three samples never fit two calls
    run = dispatcher.start("q", budget=Budget(calls=3))
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
    assert step.status == "ok" and provider.requests == 3 and run.ledger.spent["calls"] == 3


async def test_a_server_that_counts_its_own_prompts_is_reserved_at_its_count(provider):
    """The byte bound of this prompt (> 100 tokens) does not fit; the server's count (21) does."""
    dispatcher = Dispatcher(http_pool(provider.url), make_router("cheapest"))
    run = dispatcher.start("q", budget=Budget(tokens=21 + 8))
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer briefly.", input="What is the capital of France?")
    assert step is not None and step.status == "ok" and provider.tokenized >= 1 and provider.requests == 1


@pytest.mark.parametrize("budget", [Budget(tokens=10_000), Budget(calls=2), Budget(seconds=30), None])
async def test_a_server_is_not_asked_to_count_when_the_bound_already_fits(provider, budget):
    """The count only matters to a usd or tokens limit the bound does not fit: no request otherwise."""
    dispatcher = Dispatcher(http_pool(provider.url, ids=("a", "b", "c")), make_router("cheapest"))
    run = dispatcher.start("q", budget=budget)
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer briefly.", input="What is the capital of France?")
    assert step is not None and step.status == "ok" and provider.requests == 1
    assert provider.tokenized == 0


async def test_counts_are_asked_at_once_and_bounded_in_all(provider):
    """Three candidates on one server and model share one count; a slow /tokenize costs one wait of
    at most 0.5 s, after which the bound stays."""
    pool = http_pool(provider.url, ids=("a", "b", "c"))
    await pool.preload()  # the SDK is loaded before the clock starts (run alone, the step took 2.3 s importing it)
    provider.tokenized, provider.tokenize_delay = 0, 2.0  # preloading probed /tokenize
    dispatcher = Dispatcher(pool, make_router("cheapest"))
    run = dispatcher.start("q", budget=Budget(tokens=21 + 8))
    started = time.perf_counter()
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer briefly.", input="What is the capital of France?")
    elapsed = time.perf_counter() - started
    assert step is None and run.exhausted  # the bound stays where the server did not answer in time: nothing fits
    assert provider.tokenized == 1 and provider.requests == 0
    assert 0.45 <= elapsed < 1.0


async def test_seconds_budget_is_a_deadline_not_a_failure(provider):
    provider.mode = "hang"
    pool = http_pool(provider.url, timeout_s=60, ids=("a", "b"))
    await pool.preload()  # the SDK is loaded before the clock starts (run alone, its import blocked the loop past the deadline)
    dispatcher = Dispatcher(pool, make_router("cheapest"), backoff_s=0.01)
    run = dispatcher.start("q", budget=Budget(seconds=0.5))
    started = time.perf_counter()
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
    took = time.perf_counter() - started
    task = dispatcher.finish(run)
    assert task.status == "budget_exhausted" and step.status == "failed"
    assert took < 0.5 + 0.1 + 0.1  # ≤ 100 ms past the limit, plus one cancellation
    assert provider.requests == 1  # no retry, no fallback after the deadline
    kinds = [e.kind for e in run.context["audit"]]
    assert "deadline" in kinds and "retry" not in kinds and "fallback" not in kinds



@pytest.mark.parametrize("strategy", ["direct", "sc@3"])
async def test_on_a_busy_event_loop_the_deadline_costs_one_turn_not_three(provider, strategy):
    """Each turn of a busy loop takes tens of milliseconds (here 40 ms: a task that blocks the loop).
    A cut at the deadline is seen up to a turn late (the timer) and acted on in the next; the step
    must end there (measured 70–110 ms), not two turns later through a task per sample and their
    done-callbacks (was 165–190 ms, single sample and sc@3 alike)."""
    provider.mode = "hang"
    turn = 0.04
    stop = False

    async def hog() -> None:  # other tasks' CPU work: every turn of the loop blocks for ``turn`` seconds
        while not stop:
            time.sleep(turn)
            await asyncio.sleep(0)

    pool = http_pool(provider.url, timeout_s=60, strategies=(strategy,))
    await pool.preload()  # the client and the SDK's reply models are built before the task's clock starts
    dispatcher = Dispatcher(pool, make_router("cheapest"))
    busy = asyncio.create_task(hog())
    try:
        await asyncio.sleep(0)
        lateness = []
        for _ in range(3):
            run = dispatcher.start("q", budget=Budget(seconds=0.3))
            step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
            lateness.append(run.ledger.elapsed() - 0.3)
            assert step.status == "failed" and dispatcher.finish(run).status == "budget_exhausted"
    finally:
        stop = True
        await busy
    assert min(lateness) < 3.5 * turn, lateness  # up to a turn to the timer's, that turn, the next

async def test_a_graph_task_stopped_by_its_deadline_makes_no_call_in_its_remaining_roles(provider):
    """A task stopped by its deadline in the first of four roles passes the other three as no-ops.
    On a loop whose turns take 40 ms, ``arun`` returns 1.10 s past the limit (27–28 turns: about seven
    per LangGraph superstep). Routing a chain by ``Command(goto=END)`` cut that to 0.49–0.67 s but
    broke ``update_state`` (see test_graph.py), so the edges stay static; the bound catches a retry or
    a call after the deadline (each a 60 s hang here)."""
    from agentroute import AgentGraph

    provider.mode = "hang"
    turn, stop = 0.04, False

    async def hog() -> None:
        while not stop:
            time.sleep(turn)
            await asyncio.sleep(0)

    pool = http_pool(provider.url, timeout_s=60)
    await pool.preload()
    graph = AgentGraph("chain")
    roles = ("planner", "researcher", "writer", "summarizer")
    for role in roles:
        graph.add_role(role, prompt=role)
    for a, b in zip(roles, roles[1:], strict=False):
        graph.add_edge(a, b)
    app = graph.compile(pool=pool, router=make_router("cheapest"), budget=Budget(seconds=0.3))
    busy = asyncio.create_task(hog())
    try:
        await asyncio.sleep(0)
        started = time.perf_counter()
        result = await app.arun("q")
        late = time.perf_counter() - started - 0.3
    finally:
        stop = True
        await busy
    assert result.status == "budget_exhausted" and [s.stage for s in result.steps] == ["planner"]
    assert provider.requests <= 1  # the request may not even leave before the deadline on this loop
    assert late < 35 * turn, late  # measured 1.10 s (27.5 turns)


@pytest.mark.parametrize("strategy", ["direct", "sc@3"])
async def test_a_task_cancelled_by_its_caller_is_recorded_interrupted_with_what_its_calls_may_cost(provider, tmp_path, strategy):
    """A notebook's interrupt or ``task.cancel()`` while the provider works: the attempts were
    charged their worst case in the ledger, but no step was recorded, so the task was stored
    ``failed`` at $0 — below what the provider may bill. Now the cancelled step is recorded (failed,
    ``cancelled``, its worst case) and the task ends ``interrupted`` with that cost; a stream left
    early ends ``interrupted`` too."""
    from agentroute import AgentGraph
    from agentroute.memory import SQLMemory

    provider.mode = "hang"
    memory = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    graph = AgentGraph("cancel").add_role("planner", prompt="p").add_role("executor", prompt="e").add_edge("planner", "executor")
    app = graph.compile(pool=http_pool(provider.url, timeout_s=30, strategies=(strategy,)), router=make_router("cheapest"), memory=memory)
    samples = 3 if strategy == "sc@3" else 1
    task = asyncio.create_task(app.arun("a question", task_id="cancelled"))
    while provider.requests < samples:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def leave_early() -> None:
        async for _ in app.astream({"query": "another", "task_id": "left"}, stream_mode="custom"):
            break  # the planner's step streamed: stop reading

    provider.mode = "ok"
    await leave_early()
    await asyncio.sleep(0.05)  # the event loop closes an async generator left by `break` in a later turn
    memory.flush()
    cancelled, left = memory.get_task("cancelled"), memory.get_task("left")
    assert cancelled.task.status == "interrupted" and [s.error for s in cancelled.steps] == ["cancelled"]
    assert cancelled.task.cost_usd > 0 and cancelled.task.cost_usd == pytest.approx(cancelled.steps[0].cost_usd)
    assert left.task.status == "interrupted" and [s.stage for s in left.steps] == ["planner"]
    memory.close()

    # the cancelled step's cost is what the ledger booked: each attempt's worst case
    provider.mode = "hang"
    dispatcher = Dispatcher(http_pool(provider.url, timeout_s=30, strategies=(strategy,)), make_router("cheapest"))
    run, before = dispatcher.start("q"), provider.requests
    step = asyncio.create_task(dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi"))
    while provider.requests < before + samples:
        await asyncio.sleep(0.01)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert [s.error for s in run.steps] == ["cancelled"] and run.ledger.spent["calls"] == samples
    assert run.ledger.spent_usd > 0 and run.steps[0].cost_usd == pytest.approx(run.ledger.spent_usd)


CTRL_C_SCRIPT = """
import asyncio, json, sys, threading, time
from aiohttp import web
from agentroute import AgentGraph, make_router
from agentroute.memory import SQLMemory
from tests.helpers import serve_on_loopback
from tests.test_dispatch_guarantees import Provider, http_pool

loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
provider = Provider("hang")

async def serve():
    app = web.Application()
    app.router.add_post("/v1/chat/completions", provider.handle)
    root, _ = await serve_on_loopback(app)
    return root + "/v1"

url = asyncio.run_coroutine_threadsafe(serve(), loop).result()
memory = SQLMemory(sys.argv[1])
graph = AgentGraph("g").add_role("planner", prompt="p").add_role("executor", prompt="e").add_edge("planner", "executor")
app = graph.compile(pool=http_pool(url, timeout_s=30), router=make_router("cheapest"), memory=memory)

def announce():
    while provider.requests < 1:
        time.sleep(0.01)
    print("calling", flush=True)

threading.Thread(target=announce, daemon=True).start()
try:
    app.invoke({"query": "q", "task_id": "ctrl-c"})
except KeyboardInterrupt:
    memory.flush()
    t = memory.get_task("ctrl-c")
    print(json.dumps({"status": t.task.status, "cost": t.task.cost_usd, "steps": [[s.error, s.cost_usd] for s in t.steps]}), flush=True)
"""


def test_ctrl_c_during_a_sync_invoke_records_the_interrupted_task_and_its_cost(tmp_path):
    """Ctrl-C in a terminal or a notebook while ``invoke`` waits on a provider: the task is recorded
    ``interrupted`` with its cancelled step's cost (it was ``failed`` at $0)."""
    import json as json_
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), f"sqlite:///{tmp_path}/memory.db"], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout.readline().strip() == "calling", proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    record = json_.loads(out.strip().splitlines()[-1])
    assert record["status"] == "interrupted" and [e for e, _ in record["steps"]] == ["cancelled"], err
    assert record["cost"] > 0 and record["cost"] == pytest.approx(record["steps"][0][1])


# -- usage is outside data -----------------------------------------------------------------------


class Reply:
    """What one model replies: its usage (and cost), or an exception; counts its calls."""

    def __init__(self, tokens_in: int = 10, tokens_out: int = 5, cost: float | None = None):
        self.tokens_in, self.tokens_out, self.cost, self.calls = tokens_in, tokens_out, cost, 0


class Scripted(Backend):
    """Replies as each card's :class:`Reply` says."""

    name = "scripted"

    def __init__(self, replies: dict[str, Reply]):
        self.replies = replies

    async def complete(self, request, card):
        reply = self.replies[card.id]
        reply.calls += 1
        cost = card.usd(reply.tokens_in, reply.tokens_out) if reply.cost is None else reply.cost
        return Completion(model=card.id, text="answer", tokens_in=reply.tokens_in, tokens_out=reply.tokens_out, cost_usd=cost)


def scripted_pool(*replies: Reply) -> ModelPool:
    cards = [ModelCard(id=f"m{i}", backend="litellm", input_price=1.0, output_price=1.0, max_tokens=16) for i in range(len(replies))]
    return ModelPool(cards, {"litellm": Scripted({f"m{i}": r for i, r in enumerate(replies)})})


async def test_negative_usage_is_a_protocol_error_charged_its_worst_case():
    liar, honest = Reply(tokens_out=-10**6, cost=-0.9987), Reply(cost=1e-6)
    pool = scripted_pool(liar, honest)
    dispatcher = Dispatcher(pool, make_router("fixed", model="m0"))
    run = dispatcher.start("q", budget=Budget(calls=2))
    for _ in range(40):
        await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
    assert liar.calls + honest.calls <= 2  # was 40 paid steps through a 2-call budget
    assert run.ledger.spent_usd > 0 and liar.calls == 1  # the faulty endpoint is avoided afterwards
    assert [e.kind for e in run.context["audit"]].count("protocol_error") == 1
    assert dispatcher.finish(run).cost_usd == pytest.approx(run.ledger.spent_usd)


async def test_nan_cost_never_disables_later_checks():
    dispatcher = Dispatcher(scripted_pool(Reply(cost=float("nan")), Reply()), make_router("cheapest"))
    run = dispatcher.start("q", budget=Budget(usd=0.001))
    for _ in range(20):
        await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
    spent = run.ledger.spent_usd
    assert spent == spent and spent <= 0.001  # not NaN, within the limit


async def test_overrun_is_booked_as_billed_audited_and_stops_the_task():
    over = Reply(tokens_out=500)  # max_tokens is 16: the provider ignored it
    dispatcher = Dispatcher(scripted_pool(over), make_router("cheapest"))
    run = dispatcher.start("q", budget=Budget(usd=1.0))
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
    assert step.status == "ok" and step.cost_usd == pytest.approx(510e-6)  # the bill, not the cap
    [event] = [e for e in run.context["audit"] if e.kind == "overrun"]
    assert event.subject == "m0" and "usd +" in event.detail
    assert await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi") is None
    assert over.calls == 1
    task = dispatcher.finish(run)
    assert task.status == "budget_exhausted" and task.cost_usd == pytest.approx(510e-6)


# -- routers and postconditions cannot take a task down -----------------------------------------


class Raising(Router):
    name = "raising"

    def __init__(self, *, where: str = "route"):
        self.where = where

    def route(self, ctx):
        if self.where == "route":
            raise RuntimeError("bug in route")
        if self.where == "garbage":
            return "large"
        from agentroute.routers.base import decide

        return decide(self, ctx, len(ctx.candidates) - 1)

    def observe(self, step, task=None):
        if self.where == "observe":
            raise RuntimeError("bug in observe")

    def escalate(self, ctx, step):
        if self.where == "escalate":
            raise RuntimeError("bug in escalate")
        return False


@pytest.mark.parametrize("where", ["route", "garbage", "observe", "escalate"])
async def test_a_failing_router_is_audited_and_the_task_continues(where):
    dispatcher = Dispatcher(replay_pool(), Raising(where=where))
    run = dispatcher.start("q", query_id="q0")
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
    assert step.status == "ok"
    if where in ("route", "garbage"):
        assert step.agent.model == "small"  # the cheapest candidate
    task = dispatcher.finish(run)
    assert task.status == "done"
    errors = [e for e in run.context["audit"] if e.kind == "router_error"]
    assert errors and all(e.subject == "raising" for e in errors)


async def test_a_raising_postcondition_is_a_failed_recorded_step():
    def explodes(step):
        raise ValueError("cannot check")

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), max_fallbacks=0)
    run = dispatcher.start("q", query_id="q0")
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x", postconditions=[explodes])
    assert step.status == "failed" and "explodes raised ValueError" in step.error
    assert run.steps == [step] and run.context["audit"][0].kind == "postcondition_failed"


class _SleepyRouter(Router):
    """Routes to the first candidate, sleeping 60 ms (≥ ``SLOW_ROUTE_S``; by ``sleep``) on the calls
    numbered in ``slow`` (1-based); records the thread of every call."""

    name = "sleepy"

    def __init__(self, slow, sleep=time.sleep) -> None:
        self.slow, self.sleep, self.threads = set(slow), sleep, []

    def route(self, ctx):
        import threading

        from agentroute.routers.base import decide

        self.threads.append(threading.current_thread().name)
        if len(self.threads) in self.slow:
            self.sleep(0.06)
        return decide(self, ctx, 0)


async def _route_steps(router: Router, n: int) -> list[Step]:
    dispatcher = Dispatcher(replay_pool(), router)
    run = dispatcher.start("q", query_id="q0")
    for _ in range(n):
        await dispatcher.step(run, role="executor", stage="execute", prompt="", input="x")
    return run.steps


async def test_a_slow_synchronous_router_moves_off_the_event_loop():
    import threading

    router = _SleepyRouter(range(1, 5))
    steps = await _route_steps(router, 4)
    main = threading.main_thread().name
    assert router.threads[:3] == [main] * 3  # three slow calls on the loop's thread …
    assert router.threads[3] != main  # … then a worker thread: the loop keeps serving other tasks
    assert all(s.status == "ok" for s in steps)


async def test_a_fast_router_paused_now_and_then_stays_on_the_event_loop(monkeypatch):
    """Slow calls that are not in a row — a first call that loads an encoder, a loaded machine
    pausing the process (seen at load 12–18 with ``cheapest``) — do not send the router to a worker
    thread for good: each later step would pay a thread hop (before: any three slow calls did).

    The dispatcher times its router on a clock that only the slow calls move (60 ms each): on the
    real one, a loaded machine could pause a fast call for 50 ms too, making three in a row."""
    import threading
    import types

    from agentroute.dispatch import dispatcher as dispatcher_module

    clock = [0.0]
    monkeypatch.setattr(dispatcher_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0],
                                                                         monotonic=time.monotonic))  # fmt: skip
    router = _SleepyRouter([1, 3, 5, 8, 9], sleep=lambda s: clock.__setitem__(0, clock[0] + s))  # never three in a row
    await _route_steps(router, 10)
    assert router.threads == [threading.main_thread().name] * 10


# -- the stage machine has no holes -------------------------------------------------------------


async def test_a_role_bound_to_no_stage_is_blocked_and_audited():
    sm = StageMachine(["execute"], bindings={"executor": ["execute"]})
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), stage_machine=sm)
    run = dispatcher.start("q", query_id="q0")
    assert await dispatcher.step(run, role="intruder", stage="execute", prompt="", input="x") is None
    assert run.context["audit"][0].kind == "stage_blocked" and "bound to no stage" in run.context["audit"][0].detail
    assert run.steps == []


async def test_skills_check_the_runs_actual_stage_and_every_block_is_audited():
    sm = StageMachine(["plan", "execute"], transitions=[("plan", "execute")], bindings={"planner": ["plan"]})
    skills = SkillRegistry()
    skills.register("search", lambda ctx: ctx.setdefault("hits", ["x"]), stages=["execute"])
    skills.register("needs", lambda ctx: 1, preconditions=[__import__("agentroute.dispatch", fromlist=["has_key"]).has_key("missing")])
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), stage_machine=sm)
    run = dispatcher.start("q", query_id="q0")
    with pytest.raises(SkillBlocked):  # the run is in no stage yet: 'plan' is where tasks start
        await dispatcher.use_skill(run, skills, "search", stage="execute")
    with pytest.raises(SkillBlocked):  # a legal stage, but not the skill's
        await dispatcher.use_skill(run, skills, "search", stage="plan")
    assert await dispatcher.use_skill(run, skills, "search", stage="execute") == ["x"] and run.stage == "execute"
    with pytest.raises(SkillBlocked):
        await dispatcher.use_skill(run, skills, "needs")
    kinds = [e.kind for e in run.context["audit"]]
    assert kinds == ["stage_blocked", "skill_blocked", "precondition_failed"]


def test_audit_details_are_json_serialisable():
    dispatcher = Dispatcher(replay_pool(), Raising(where="route"))
    run = dispatcher.start("q", query_id="q0")
    asyncio.run(dispatcher.step(run, role="executor", stage="execute", prompt="", input="x"))
    json.dumps([e.model_dump(mode="json") for e in run.context["audit"]])


async def test_a_query_the_replay_log_lacks_is_a_failed_attempt_that_costs_a_call_not_money():
    """Replaying logs where a model has no outcome for a query: nothing ran, so nothing was billed.
    It was charged its worst case (a large model's: $0.0023 of a $0.003 budget), as if it had run."""
    dispatcher = Dispatcher(replay_pool(), make_router("strongest"), max_fallbacks=0)
    run = dispatcher.start("q", budget=Budget(usd=0.003, calls=3))
    step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi", query_id="unlogged")
    assert step.status == "failed" and "no logged outcome for query 'unlogged'" in step.error
    assert run.ledger.spent["usd"] == 0 and run.ledger.spent["calls"] == 1 and step.cost_usd == 0


async def test_a_backend_of_your_own_that_reports_no_usage_is_billed_from_the_card_not_free():
    """``Completion(model, text)`` from a user's backend was recorded at 0 tokens and $0: a ``usd``
    budget never bound it. Missing usage is counted (the prompt as reserved, the text by the byte
    bound) and priced by the card; a synchronous ``complete`` is refused when the pool is built."""
    from agentroute.errors import ConfigurationError

    class TextOnly(Backend):
        async def complete(self, request, card):
            return Completion(model=card.id, text="an answer of six words here")

    card = ModelCard(id="mine", backend="mine", input_price=1.0, output_price=2.0, max_tokens=64)
    dispatcher = Dispatcher(ModelPool([card], {"mine": TextOnly()}), make_router("cheapest"))
    run = dispatcher.start("q", budget=Budget(usd=0.001))
    for _ in range(100):  # at $0 a step the budget never binds
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="", input="hi")
        if step is None:
            break
        prompt = TextOnly().prompt_tokens(step_request(step), card)
        assert step.tokens_in == prompt and step.tokens_out == len("an answer of six words here")
        assert step.cost_usd > 0 and step.cost_usd == pytest.approx(card.usd(prompt, step.tokens_out))
    assert 3 <= len(run.steps) < 100 and run.ledger.spent_usd <= 0.001

    class Blocking(Backend):
        def complete(self, request, card):  # a common slip: not ``async def``
            return Completion(model=card.id, text="x")

    with pytest.raises(ConfigurationError, match="backend 'mine' \\(Blocking\\): complete must be `async def"):
        ModelPool([card], {"mine": Blocking()})


def step_request(step):
    """The request a one-role step sent: its empty system prompt and its input."""
    from agentroute.strategies import get_strategy
    from agentroute.types import CompletionRequest

    system = get_strategy(step.agent.strategy).system_prompt("")
    return CompletionRequest(step.agent.model, [{"role": "system", "content": system}, {"role": "user", "content": step.input}], 64)


async def test_conversation_turns_are_sent_as_messages_and_count_in_the_worst_case():
    """``Dispatcher.step(history=...)`` (routed serving's conversations): the earlier turns go to
    the model between the system prompt and the input, and the budget's worst case counts them, so
    a long conversation under a tokens limit is refused before any call."""
    history = [("user", "Name a colour. " * 200), ("assistant", "Red.")]
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"))
    run = dispatcher.start("q", query_id="q0")
    [plain] = dispatcher._plans(run, "executor", "Answer.", "Another?", ["small"], None, "q0")
    [talk] = dispatcher._plans(run, "executor", "Answer.", "Another?", ["small"], None, "q0", history)
    assert [m["role"] for m in talk.request.messages] == ["system", "user", "assistant", "user"]
    assert talk.request.messages[-1]["content"] == "Another?" and talk.worst.tokens > plain.worst.tokens + 400
    limit = Budget(tokens=(plain.worst.tokens + talk.worst.tokens) // 2)
    ok = dispatcher.start("q", query_id="q0", budget=limit)
    assert await dispatcher.step(ok, role="executor", stage="execute", prompt="Answer.", input="Another?", models=["small"]) is not None
    tight = dispatcher.start("q", query_id="q0", budget=limit)
    step = await dispatcher.step(tight, role="executor", stage="execute", prompt="Answer.", input="Another?", models=["small"], history=history)
    assert step is None and tight.exhausted and not tight.steps
