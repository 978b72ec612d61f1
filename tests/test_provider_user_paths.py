"""Real providers' behaviour as a user's app sees it: rate limits that say when to come back,
agentroute's errors crossing process boundaries, tokens streamed into LangGraph's ``messages`` mode.

Providers are real HTTP servers on loopback (aiohttp), scripted per model, that record when each
request arrived; the clients are the real ``openai`` SDK, LiteLLM and LangGraph.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import importlib
import json
import multiprocessing
import pickle
import time
from typing import Any

import pytest
from aiohttp import web

from agentroute import Budget, Dispatcher, ModelCard, ModelPool, make_router
from agentroute.errors import AgentrouteError, BudgetExceededError
from tests.helpers import serve_on_loopback

# -- a scripted loopback provider ---------------------------------------------------------------

USAGE = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}


class Provider:
    """Answers ``POST /v1/chat/completions`` from a script per served model name.

    ``script[model]`` is a list of replies used in turn (the last one repeats): ``("429", headers)``
    refuses with a rate limit, ``("ok", pieces)`` streams (or returns) the pieces as the answer,
    ``("drop", pieces)`` streams the pieces then drops the connection. ``seen`` records
    ``(model, monotonic time)`` of every request; ``pace_s`` is the time between two streamed pieces.
    """

    def __init__(self, script: dict[str, list[tuple[str, Any]]], pace_s: float = 0.0):
        self.script, self.pace_s = script, pace_s
        self.seen: list[tuple[str, float]] = []
        self.url = ""

    def times(self, model: str) -> list[float]:
        return [t for m, t in self.seen if m == model]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        turns = self.script[model]
        kind, detail = turns[min(len([m for m, _ in self.seen if m == model]), len(turns) - 1)]
        self.seen.append((model, time.monotonic()))
        if kind == "429":
            error = {"message": "Rate limit reached for requests", "type": "rate_limit_error"}
            return web.json_response({"error": error}, status=429, headers=detail)
        if kind == "toolong":  # vLLM's answer to a prompt + max_tokens over the context window
            error = {"object": "error", "message": "This model's maximum context length is 2048 tokens. However, you "
                     "requested 4096 tokens (96 in the messages, 4000 in the completion).", "type": "BadRequestError", "code": 400}
            return web.json_response(error, status=400)
        if kind == "quota":  # OpenAI's answer to an account out of credit
            error = {"message": "You exceeded your current quota, please check your plan and billing details.",
                     "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}
            return web.json_response({"error": error}, status=429)
        pieces = list(detail)
        usage = {**USAGE, "completion_tokens": len(pieces), "total_tokens": USAGE["prompt_tokens"] + len(pieces)}
        if not body.get("stream"):
            return web.json_response({
                "id": "x", "object": "chat.completion", "created": 0, "model": model, "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}, "finish_reason": "stop"}],
            })
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model}
        for piece in pieces:
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(self.pace_s)
        if kind == "drop":
            request.transport.abort()
            return response
        await response.write(f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n".encode())
        await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response


async def start(provider: Provider) -> Any:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", provider.handle)
    root, runner = await serve_on_loopback(app)
    provider.url = f"{root}/v1"
    return runner


OPENED: list[ModelPool] = []  # the pools built by pool(), closed by stop() on the event loop that used them


def pool(url: str, *models: str, backend: str = "openai") -> ModelPool:
    """One card a served model, priced so that the first one listed is the cheapest."""
    models_pool = ModelPool([
        ModelCard(id=m, backend=backend, model=f"openai/{m}" if backend == "litellm" else m, base_url=url,
                  input_price=1.0 + i, output_price=2.0 + i, max_tokens=64, timeout_s=30.0, strategies=["direct"])
        for i, m in enumerate(models)
    ])
    OPENED.append(models_pool)
    return models_pool


async def stop(runner: Any) -> None:
    """Close the test's pools (their clients' connections, as a caller closes them), then its server."""
    while OPENED:
        await OPENED.pop().aclose()
    await runner.cleanup()


async def one_step(provider: Provider, *models: str, backend: str = "openai", budget: Budget | None = None) -> tuple[Any, Any]:
    """One routed step ("capital of France?") over ``models`` of ``provider``, served on loopback
    for it, by a dispatcher that retries twice 10 ms apart: ``(step, run)``."""
    runner = await start(provider)
    try:
        dispatcher = Dispatcher(pool(provider.url, *models, backend=backend), make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?", budget=budget)
        return await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="capital of France?"), run
    finally:
        await stop(runner)


# -- rate limits -------------------------------------------------------------------------------

def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(("headers", "at_least"), [
    ({"retry-after-ms": "400"}, 0.4),
    ({"Retry-After": "1"}, 1.0),
    ({"Retry-After": http_date(3)}, 0.5),  # an HTTP date: whole seconds (now + 1 to 2 s), read a moment later
], ids=["retry-after-ms", "seconds", "http-date"])
async def test_a_429_is_retried_no_sooner_than_the_server_asked(headers, at_least):
    """User saw: a rate-limited call retried after the dispatcher's 0.2 s backoff, refused again.
    Now the retry waits what ``Retry-After`` / ``retry-after-ms`` says, and succeeds."""
    if "Retry-After" in headers and "GMT" in headers["Retry-After"]:
        headers = {"Retry-After": http_date(2)}  # made now, not at collection
    provider = Provider({"busy": [("429", headers), ("ok", ["Paris"])]})
    step, run = await one_step(provider, "busy", budget=Budget(calls=5))
    assert step is not None and step.status == "ok" and step.output == "Paris", step
    first, second = provider.times("busy")
    assert second - first >= at_least - 0.05, (second - first, headers)
    assert run.ledger.spent["calls"] == 2  # the refused attempt was reserved and counted as a call
    assert run.ledger.spent_usd == pytest.approx(step.cost_usd)


async def test_a_wait_longer_than_the_deadline_falls_over_to_another_model_at_once():
    """User saw: a model rate-limited for a minute was retried twice more (each a call) before the
    fallback. Now the step falls over at once (the wait does not fit the task's 5 s), and says why."""
    provider = Provider({"busy": [("429", {"Retry-After": "60"})], "spare": [("ok", ["Paris"])]})
    runner = await start(provider)
    try:
        models = pool(provider.url, "busy", "spare")
        await models.preload()  # the SDK is imported before the clock starts (run alone, that took 0.5 s of the 4)
        dispatcher = Dispatcher(models, make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?", budget=Budget(seconds=5, calls=5))
        began = time.monotonic()
        step = await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="capital of France?")
        took = time.monotonic() - began
    finally:
        await stop(runner)
    assert step is not None and step.status == "ok" and step.agent.model == "spare", step
    assert len(provider.times("busy")) == 1, provider.seen  # not retried into the same wall
    assert took < 4.0 and not run.exhausted  # no wait for the 60 s (generous: a busy machine)
    assert run.ledger.spent["calls"] == 2
    failed = [e.detail for e in run.context["audit"] if e.kind == "step_failed"]
    assert failed and "asks to wait 60s" in failed[0] and "before the deadline" in failed[0], failed


async def test_the_tasks_next_steps_leave_a_rate_limited_model_alone_until_its_wait_is_over():
    """User saw: every step of a task routed to the model that had just said "come back in a
    minute", each time a refused call of the budget before the fallback. Now the task's next steps
    go to another model while the wait lasts; when no other model is left, the waiting one is tried."""
    provider = Provider({"busy": [("429", {"Retry-After": "60"})], "spare": [("ok", ["Paris"])]})
    runner = await start(provider)
    try:
        dispatcher = Dispatcher(pool(provider.url, "busy", "spare"), make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?", budget=Budget(seconds=10))
        steps = [await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input=f"question {i}") for i in range(3)]
        only_busy = await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="again", models=["busy"])
    finally:
        await stop(runner)
    assert [s.agent.model for s in steps if s is not None and s.status == "ok"] == ["spare"] * 3, steps
    assert len(provider.times("busy")) == 2, provider.seen  # the first step's try, then the step with no one else
    assert only_busy is not None and only_busy.status == "failed" and "asks to wait 60s" in (only_busy.error or "")


async def test_a_wait_past_the_cap_falls_over_without_a_deadline():
    provider = Provider({"busy": [("429", {"retry-after-ms": "90000"})], "spare": [("ok", ["Paris"])]})
    step, run = await one_step(provider, "busy", "spare")
    assert step is not None and step.status == "ok" and step.agent.model == "spare", step
    assert len(provider.times("busy")) == 1, provider.seen
    failed = [e.detail for e in run.context["audit"] if e.kind == "step_failed"]
    assert "the cap is 60s" in failed[0], failed


@pytest.mark.parametrize("backend", ["openai", "litellm"])
async def test_an_account_out_of_quota_is_not_retried_the_step_falls_over(backend):
    """User saw: OpenAI's 429 ``insufficient_quota`` (no credit left) retried twice more, each a
    call of the budget, before the fallback. No wait makes it pass: now it falls over at once."""
    provider = Provider({"broke": [("quota", None)], "spare": [("ok", ["Paris"])]})
    step, run = await one_step(provider, "broke", "spare", backend=backend, budget=Budget(calls=5))
    assert step is not None and step.status == "ok" and step.agent.model == "spare", step
    assert len(provider.times("broke")) == 1, provider.seen
    failed = [e.detail for e in run.context["audit"] if e.kind == "step_failed"]
    assert failed and "exceeded your current quota" in failed[0], failed


@pytest.mark.parametrize("backend", ["openai", "litellm"])
async def test_a_context_window_refusal_is_a_context_length_error_not_billed(backend):
    """vLLM's 400 "maximum context length" came back as a plain BackendError; it is the
    ContextLengthError the SDK documents (refused before the model ran: a call, $0, not retried),
    and the step goes to a model with a longer window."""
    from agentroute.errors import ContextLengthError
    from agentroute.types import CompletionRequest

    provider = Provider({"small": [("toolong", None)], "spare": [("ok", ["Paris"])]})
    runner = await start(provider)
    try:
        cards = pool(provider.url, "small", "spare", backend=backend)
        backend_ = cards.backend("small")
        with pytest.raises(ContextLengthError) as caught:
            await backend_.complete(CompletionRequest(model="small", messages=[{"role": "user", "content": "q"}], max_tokens=8), cards.card("small"))
        assert not caught.value.retryable and not caught.value.billed
        dispatcher = Dispatcher(cards, make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?", budget=Budget(calls=5))
        step = await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="capital of France?")
    finally:
        await stop(runner)
    assert step is not None and step.status == "ok" and step.agent.model == "spare", step
    assert len(provider.times("small")) == 2  # once by hand, once by the dispatcher: never retried
    assert run.ledger.spent["calls"] == 2 and run.ledger.spent_usd == pytest.approx(step.cost_usd)


async def test_litellm_reads_the_rate_limit_wait_too():
    """The litellm backend's 429 carries the server's wait (LiteLLM keeps the response headers)."""
    pytest.importorskip("litellm")
    provider = Provider({"busy": [("429", {"retry-after-ms": "300"}), ("ok", ["Paris"])]})
    step, _ = await one_step(provider, "busy", backend="litellm", budget=Budget(calls=5))
    assert step is not None and step.status == "ok" and step.output == "Paris", step
    first, second = provider.times("busy")
    assert second - first >= 0.25, second - first


@pytest.mark.parametrize("backend", ["openai", "litellm"])
async def test_a_stream_dropped_midway_is_retried_and_its_attempt_charged_its_worst_case(backend):
    """User saw: a connection dropped in the middle of a streamed reply failed the step for good
    ("RemoteProtocolError", not retried: openai 3 raises httpx2's errors, which were not known as
    transport failures). Now it is retried, and the dropped attempt is charged as possibly billed."""
    provider = Provider({"flaky": [("drop", PIECES[:3]), ("ok", PIECES)]})
    step, run = await one_step(provider, "flaky", backend=backend)
    assert step is not None and step.status == "ok" and step.output == "".join(PIECES), step
    assert len(provider.times("flaky")) == 2
    retried = [e.detail for e in run.context["audit"] if e.kind == "retry"]
    assert retried and ("RemoteProtocolError" in retried[0] or "connection failed mid-stream" in retried[0]), retried
    honest = (USAGE["prompt_tokens"] * 1.0 + len(PIECES) * 2.0) / 1e6
    assert step.cost_usd > honest  # the dropped attempt may have been billed: its worst case is booked


# -- errors across processes -------------------------------------------------------------------

_ERROR_MODULES = (
    "agentroute.errors", "agentroute.dispatch.skills", "agentroute.memory.errors", "agentroute.pool.card",
    "agentroute.web.actions", "agentroute.web.env", "agentroute.training.ppo",
)


def _error_classes() -> list[type[AgentrouteError]]:
    for module in _ERROR_MODULES:
        importlib.import_module(module)
    found: list[type[AgentrouteError]] = []
    todo = [AgentrouteError]
    while todo:  # bounded: the class tree is finite
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted({c for c in found if not c.__name__.startswith("_")}, key=lambda c: c.__name__)


#: Arguments for the errors whose ``__init__`` takes fields (others take a message).
_SAMPLE_ARGS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "ActionError": (("illegal", "click(99)"), {}),
    "BackendError": (("m", "HTTP 429"), {"retryable": True, "billed": False, "retry_after_s": 1.5}),
    "BrokenDependencyError": (("sklearn", OSError("libgomp.so.1: cannot open shared object file")), {}),
    "BudgetExceededError": (("usd", 0.01, 0.004, 0.007), {}),
    "CardError": (("m", "input_price", "must be ≥ 0"), {}),
    "ContextLengthError": (("m", "too long"), {}),
    "MemoryWriteError": (([("step", {"id": "s1"}, RuntimeError("disk full"))],), {}),
    "MissingDependencyError": (("torch", "nn"), {}),
    "NotFittedError": (("knn",), {}),
    "PPOOptionError": (("epochs", "an integer ≥ 1", 0), {}),
    "PolicyServerError": (("http://127.0.0.1:8000/v1", "no completion within 3 s"), {"timed_out": True}),
    "ProtocolError": (("m", "NaN usage"), {}),
    "SkillBlocked": (("search", "precondition_failed", "no query"), {}),
    "StateFileError": (("/tmp/state.json", "truncated"), {}),
    "UnknownNameError": (("model", "gpt-9", ["a", "b"]), {}),
    "UnknownTaskError": (("click-nothing", ["click-button"]), {}),
}


def _comparable(error: BaseException) -> dict[str, Any]:
    return {k: repr(v) for k, v in vars(error).items()}


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_agentroute_error_round_trips_through_pickle_with_its_fields(cls):
    """User saw: ``BudgetExceededError`` raised in a ProcessPoolExecutor worker became a
    TypeError in the parent (pickle called ``__init__`` with the message alone)."""
    args, kwargs = _SAMPLE_ARGS.get(cls.__name__, (("something went wrong",), {}))
    error = cls(*args, **kwargs)
    for protocol in (0, pickle.HIGHEST_PROTOCOL):
        back = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(back) is cls
        assert str(back) == str(error) and back.args == error.args
        assert _comparable(back) == _comparable(error)
        assert isinstance(back, AgentrouteError)


def _spend_over(limit: float) -> None:
    from agentroute.budget import Cost, Ledger

    ledger = Ledger(Budget(usd=limit))
    ledger.reserve(Cost(usd=limit * 2))  # raises BudgetExceededError


def test_a_budget_error_raised_in_a_worker_process_reaches_the_parent_whole():
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(_spend_over, 0.01)
        with pytest.raises(BudgetExceededError) as caught:
            future.result(timeout=60)
    assert caught.value.resource == "usd" and caught.value.limit == 0.01
    assert caught.value.requested == pytest.approx(0.02)


# -- tokens into LangGraph's messages stream ---------------------------------------------------

def chat_graph(dispatcher: Dispatcher) -> Any:
    """A user's chat app: LangGraph's ``MessagesState`` with one routed node."""
    from langgraph.graph import START, MessagesState, StateGraph

    from agentroute.graph import AgentrouteState

    class Chat(MessagesState, AgentrouteState):
        pass

    builder = StateGraph(Chat)
    builder.add_node("chat", routed_node(dispatcher, role="assistant", prompt="Be brief.", input_key="messages", output_key="messages"))
    builder.add_edge(START, "chat")
    return builder.compile()


def from_routed_node() -> Any:
    from agentroute import routed_node as node

    return node


routed_node = from_routed_node()
PIECES = ["The", " capital", " of", " France", " is", " Paris", "."]


@pytest.mark.parametrize("backend", ["openai", "litellm"])
def test_a_streamed_answer_reaches_stream_mode_messages_token_by_token(backend):
    """User saw: a chat UI on ``stream_mode="messages"`` got the routed answer as one message after
    the model had finished. Now it gets AIMessageChunks as the provider streams them, then nothing
    twice (the state's message has the chunks' id), with usage on the last chunk."""
    provider = Provider({"chatty": [("ok", PIECES)]}, pace_s=0.05)

    async def scenario() -> tuple[list[Any], list[float], dict[str, Any]]:
        runner = await start(provider)
        try:
            app = chat_graph(Dispatcher(pool(provider.url, "chatty", backend=backend), make_router("cheapest")))
            got, when = [], []
            async for message, meta in app.astream({"messages": [("user", "capital of France?")]}, stream_mode="messages"):
                got.append((message, meta))
                when.append(time.monotonic())
            final = await app.ainvoke({"messages": [("user", "capital of France?")]})
            return got, when, final
        finally:
            await stop(runner)

    got, when, final = asyncio.run(scenario())
    from langchain_core.messages import AIMessageChunk

    chunks = [m for m, _ in got]
    assert all(isinstance(m, AIMessageChunk) for m in chunks), [type(m).__name__ for m in chunks]
    assert [m.content for m in chunks if m.content] == PIECES
    assert when[-1] - when[0] >= 0.2  # they came as the server sent them, not all at the end
    assert len({m.id for m in chunks}) == 1 and all(meta["langgraph_node"] == "chat" for _, meta in got)
    last = chunks[-1]
    assert last.chunk_position == "last" and last.usage_metadata["output_tokens"] == len(PIECES)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == "".join(PIECES) and merged.response_metadata["model_name"] == "chatty"
    assert final["messages"][-1].content == "".join(PIECES)


def test_sync_stream_of_an_agent_graph_streams_tokens_too():
    """``AgentGraph`` roles stream the same way under the sync ``stream`` (run on agentroute's loop)."""
    from agentroute import AgentGraph

    provider = Provider({"chatty": [("ok", PIECES)]})

    async def serve() -> Any:
        return await start(provider)

    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(serve())
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        graph = AgentGraph("one").add_role("executor", prompt="answer")
        app = graph.compile(pool=pool(provider.url, "chatty"), router=make_router("cheapest"))
        OPENED.pop()  # its clients live on agentroute's own loop, which outlives the test
        got = list(app.stream({"query": "capital of France?"}, stream_mode="messages"))
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert [m.content for m, _ in got if m.content] == PIECES
    assert {meta["langgraph_node"] for _, meta in got} == {"executor"}


def test_a_stream_cut_short_then_retried_is_two_messages_the_first_marked_failed():
    """An attempt that streamed half an answer and then lost its connection: the UI is told (its
    last chunk says ``finish_reason: "error"``), and the retry answers in a message of its own id,
    which is the id of the answer written to the state."""
    provider = Provider({"flaky": [("drop", PIECES[:3]), ("ok", PIECES)]})

    async def scenario() -> tuple[list[Any], list[Any]]:
        runner = await start(provider)
        try:
            app = chat_graph(Dispatcher(pool(provider.url, "flaky"), make_router("cheapest"), retries=2, backoff_s=0.01))
            got: list[Any] = []
            updates: list[Any] = []
            async for mode, payload in app.astream({"messages": [("user", "capital of France?")]}, stream_mode=["messages", "updates"]):
                (got if mode == "messages" else updates).append(payload)
            return got, updates
        finally:
            await stop(runner)

    got, updates = asyncio.run(scenario())
    by_id: dict[str, list[Any]] = {}
    for message, _ in got:
        by_id.setdefault(message.id, []).append(message)
    assert len(by_id) == 2, {k: [m.content for m in v] for k, v in by_id.items()}
    failed, answer = by_id.values()
    assert [m.content for m in failed if m.content] == PIECES[:3]
    assert failed[-1].response_metadata["finish_reason"] == "error" and "flaky" in failed[-1].response_metadata["agentroute_error"]
    assert "".join(m.content for m in answer) == "".join(PIECES)
    written = updates[-1]["chat"]["messages"][-1]
    assert written.content == "".join(PIECES) and written.id == answer[0].id


def test_self_consistency_and_plain_invoke_keep_one_whole_message():
    """sc@k aggregates several samples: its answer is one whole message, as before; a plain
    ``invoke`` (nobody listening) sets up no streaming at all."""
    from agentroute.graph_runtime import _WATCHED

    provider = Provider({"voter": [("ok", PIECES)]})

    async def scenario() -> tuple[list[Any], dict[str, Any]]:
        runner = await start(provider)
        try:
            cards = ModelPool([ModelCard(id="voter", backend="openai", model="voter", base_url=provider.url, input_price=1.0,
                                         output_price=2.0, max_tokens=64, timeout_s=5.0, strategies=["sc@3"])])
            OPENED.append(cards)
            app = chat_graph(Dispatcher(cards, make_router("cheapest")))
            got = [m async for m, _ in app.astream({"messages": [("user", "q")]}, stream_mode="messages")]
            before = len(_WATCHED)
            plain = await chat_graph(Dispatcher(pool(provider.url, "voter"), make_router("cheapest"))).ainvoke({"messages": [("user", "q")]})
            assert len(_WATCHED) == before
            return got, plain
        finally:
            await stop(runner)

    got, plain = asyncio.run(scenario())
    assert [m.content for m in got] == ["".join(PIECES)]
    assert plain["messages"][-1].content == "".join(PIECES)


# -- a server that ignores max_tokens, through LiteLLM -------------------------------------------

async def test_litellm_cuts_a_server_that_ignores_max_tokens_and_the_budget_holds_at_the_bill():
    """User saw: through the litellm backend, a self-hosted server that ignores ``max_tokens`` was
    read to the end (3x max_tokens billed: an ``overrun``, the task stopped ``budget_exhausted``).
    Now LiteLLM streams and the stream is closed after max_tokens + 1 chunks, as the openai
    backend does: the server stops, the bill stays within the reserved worst case."""
    pytest.importorskip("litellm")
    from tests.fixtures_adversary import Adversary

    with Adversary(pace_s=0.002) as server:
        card = ModelCard(id="runaway", backend="litellm", model="openai/runaway", base_url=server.url,
                         input_price=1.0, output_price=2.0, max_tokens=24, timeout_s=5.0, strategies=["cot"])
        dispatcher = Dispatcher(ModelPool([card]), make_router("cheapest"), retries=0)
        run = dispatcher.start("[task:lite] say a lot", budget=Budget(usd=0.01))
        step = await dispatcher.step(run, role="executor", stage="solve", prompt="[task:lite] talk", input="[task:lite] say a lot")
        await asyncio.sleep(0.1)  # the server books a cut stream when it sees the client leave
        bill = server.bill("lite")
    assert step is not None and step.status == "ok", step
    (charge,) = bill.charges
    # cut after 25 chunks; the server stops when it sees the client leave (a few tokens later on a busy machine)
    assert charge.stream and charge.completion_tokens < 2 * 24 < 3 * 24, charge
    assert not [e for e in run.context.get("audit", []) if e.kind == "overrun"], run.context.get("audit")
    assert not run.exhausted
    # booked: what was received (max_tokens + 1 chunks); the server's few tokens generated before
    # it saw the client leave are the only part of the bill the client cannot see (as with openai)
    unseen = max(0, charge.completion_tokens - 24 - 1) * 2.0 / 1e6
    assert run.ledger.spent_usd + unseen >= bill.usd - 1e-12


@pytest.mark.slow
def test_the_local_model_streams_its_tokens_into_stream_mode_messages():
    """SmolLM2 on the ``local`` backend: its tokens reach LangGraph's ``messages`` stream as it
    generates them (``LocalBackend.stream``), and they add up to the answer."""
    pytest.importorskip("transformers")
    from agentroute import AgentGraph
    from tests.fixtures_openai_server import SERVER_CARD

    card = SERVER_CARD.model_copy(update={"max_tokens": 24, "strategies": ["cot"]})
    app = AgentGraph("local").add_role("executor", prompt="Answer briefly.").compile(pool=ModelPool([card]), router=make_router("cheapest"))
    got = list(app.stream({"query": "What is the capital of France?"}, stream_mode=["messages", "values"]))
    chunks = [payload[0] for mode, payload in got if mode == "messages"]
    final = [payload for mode, payload in got if mode == "values"][-1]
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 1, texts  # token by token, not one message at the end
    assert "".join(texts) == final["answer"] and len({c.id for c in chunks}) == 1
    assert chunks[-1].usage_metadata["output_tokens"] >= 1


def test_astream_events_has_a_chat_model_stream_event_per_token():
    """LangChain UIs built on ``astream_events(version="v2")`` read ``on_chat_model_stream``: each
    streamed piece is one, between the model run's start and end."""
    provider = Provider({"chatty": [("ok", PIECES)]})

    async def scenario() -> list[dict[str, Any]]:
        runner = await start(provider)
        try:
            app = chat_graph(Dispatcher(pool(provider.url, "chatty"), make_router("cheapest")))
            return [e async for e in app.astream_events({"messages": [("user", "capital of France?")]}, version="v2")]
        finally:
            await stop(runner)

    events = asyncio.run(scenario())
    kinds = [e["event"] for e in events if e["event"].startswith("on_chat_model")]
    assert kinds[0] == "on_chat_model_start" and kinds[-1] == "on_chat_model_end", kinds
    pieces = [e["data"]["chunk"].content for e in events if e["event"] == "on_chat_model_stream"]
    assert [p for p in pieces if p] == PIECES
    end = next(e for e in events if e["event"] == "on_chat_model_end")
    assert end["data"]["output"].content == "".join(PIECES) and end["metadata"]["langgraph_node"] == "chat"


def test_a_callback_handler_that_raises_at_model_start_does_not_fail_the_call():
    """A strict handler (``raise_error=True``) that raises in ``on_chat_model_start``: the routed
    call is still made once and answered (it was failed and charged as an attempt it never made)."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Strict(BaseCallbackHandler):
        raise_error = True

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            raise RuntimeError("tracer down")

    provider = Provider({"chatty": [("ok", PIECES)]})

    async def scenario() -> dict[str, Any]:
        runner = await start(provider)
        try:
            app = chat_graph(Dispatcher(pool(provider.url, "chatty"), make_router("cheapest")))
            return await app.ainvoke({"messages": [("user", "capital of France?")]}, {"callbacks": [Strict()]})
        finally:
            await stop(runner)

    out = asyncio.run(scenario())
    assert out["messages"][-1].content == "".join(PIECES)
    assert len(provider.seen) == 1
