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
        pieces = list(detail)
        if not body.get("stream"):
            return web.json_response({
                "id": "x", "object": "chat.completion", "created": 0, "model": model, "usage": USAGE,
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
        await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': USAGE})}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response


async def start(provider: Provider) -> Any:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", provider.handle)
    root, runner = await serve_on_loopback(app)
    provider.url = f"{root}/v1"
    return runner


def pool(url: str, *models: str, backend: str = "openai") -> ModelPool:
    """One card a served model, priced so that the first one listed is the cheapest."""
    return ModelPool([
        ModelCard(id=m, backend=backend, model=f"openai/{m}" if backend == "litellm" else m, base_url=url,
                  input_price=1.0 + i, output_price=2.0 + i, max_tokens=8, timeout_s=5.0, strategies=["direct"])
        for i, m in enumerate(models)
    ])


# -- rate limits -------------------------------------------------------------------------------

def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(("headers", "at_least"), [
    ({"retry-after-ms": "400"}, 0.4),
    ({"Retry-After": "1"}, 1.0),
    ({"Retry-After": http_date(3)}, 1.0),  # an HTTP date: whole seconds, read a moment later
], ids=["retry-after-ms", "seconds", "http-date"])
async def test_a_429_is_retried_no_sooner_than_the_server_asked(headers, at_least):
    """User saw: a rate-limited call retried after the dispatcher's 0.2 s backoff, refused again.
    Now the retry waits what ``Retry-After`` / ``retry-after-ms`` says, and succeeds."""
    if "Retry-After" in headers and "GMT" in headers["Retry-After"]:
        headers = {"Retry-After": http_date(2)}  # made now, not at collection
    provider = Provider({"busy": [("429", headers), ("ok", ["Paris"])]})
    runner = await start(provider)
    try:
        dispatcher = Dispatcher(pool(provider.url, "busy"), make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?", budget=Budget(calls=5))
        step = await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="capital of France?")
    finally:
        await runner.cleanup()
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
        dispatcher = Dispatcher(pool(provider.url, "busy", "spare"), make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?", budget=Budget(seconds=5, calls=5))
        began = time.monotonic()
        step = await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="capital of France?")
        took = time.monotonic() - began
    finally:
        await runner.cleanup()
    assert step is not None and step.status == "ok" and step.agent.model == "spare", step
    assert len(provider.times("busy")) == 1, provider.seen  # not retried into the same wall
    assert took < 2.0 and not run.exhausted
    assert run.ledger.spent["calls"] == 2
    failed = [e.detail for e in run.context["audit"] if e.kind == "step_failed"]
    assert failed and "asks to wait 60s" in failed[0] and "before the deadline" in failed[0], failed


async def test_a_wait_past_the_cap_falls_over_without_a_deadline():
    provider = Provider({"busy": [("429", {"retry-after-ms": "90000"})], "spare": [("ok", ["Paris"])]})
    runner = await start(provider)
    try:
        dispatcher = Dispatcher(pool(provider.url, "busy", "spare"), make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?")
        step = await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="capital of France?")
    finally:
        await runner.cleanup()
    assert step is not None and step.status == "ok" and step.agent.model == "spare", step
    assert len(provider.times("busy")) == 1, provider.seen
    failed = [e.detail for e in run.context["audit"] if e.kind == "step_failed"]
    assert "the cap is 60s" in failed[0], failed


async def test_litellm_reads_the_rate_limit_wait_too():
    """The litellm backend's 429 carries the server's wait (LiteLLM keeps the response headers)."""
    pytest.importorskip("litellm")
    provider = Provider({"busy": [("429", {"retry-after-ms": "300"}), ("ok", ["Paris"])]})
    runner = await start(provider)
    try:
        dispatcher = Dispatcher(pool(provider.url, "busy", backend="litellm"), make_router("cheapest"), retries=2, backoff_s=0.01)
        run = dispatcher.start("capital of France?", budget=Budget(calls=5))
        step = await dispatcher.step(run, role="executor", stage="solve", prompt="answer", input="capital of France?")
    finally:
        await runner.cleanup()
    assert step is not None and step.status == "ok" and step.output == "Paris", step
    first, second = provider.times("busy")
    assert second - first >= 0.25, second - first


# -- errors across processes -------------------------------------------------------------------

_ERROR_MODULES = (
    "agentroute.errors", "agentroute.dispatch.skills", "agentroute.memory.errors", "agentroute.pool.card",
    "agentroute.web.actions", "agentroute.web.env",
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
    "BudgetExceededError": (("usd", 0.01, 0.004, 0.007), {}),
    "CardError": (("m", "input_price", "must be ≥ 0"), {}),
    "ContextLengthError": (("m", "too long"), {}),
    "MemoryWriteError": (([("step", {"id": "s1"}, RuntimeError("disk full"))],), {}),
    "MissingDependencyError": (("torch", "nn"), {}),
    "NotFittedError": (("knn",), {}),
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
