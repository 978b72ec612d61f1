"""`--policy-url` pointing at a policy server that fails, as a served task meets it: a real aiohttp
server on 127.0.0.1 that answers garbage, an error object, closes mid-reply, or hangs.

Was: the traceback of ``json``/``http.client`` out of the graph run (and a hanging server held a
``--budget-seconds`` task for the 120 s socket timeout). Now: the task fails on one
:class:`PolicyServerError` line naming the server; it ends ``budget_exhausted`` with the last agent's
reply when its time runs out while the policy generates.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from agentroute import AgentGraph, make_router
from agentroute.budget import Budget
from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.agent import ThinkRouteAgent
from agentroute.routers.router_r1.served import PolicyServerError, ServedPolicy

sys.path.insert(0, str(Path(__file__).parent))
from helpers import serve_on_loopback  # noqa: E402
from test_router_r1 import CharTokenizer, echo_pool  # noqa: E402

ROUTE = "<think>ask</think><route> small: who wrote Dune? </route>"


def _app() -> web.Application:
    """``/MODE/v1``: ``/models`` lists one model (``garbage-models``: HTML); ``/completions`` does MODE
    (``route-then-X``: a route action first, then X)."""
    calls: dict[str, int] = {}
    stopping = asyncio.Event()  # set when the test stops the server: a hanging reply ends then

    async def models(request: web.Request) -> web.StreamResponse:
        if request.match_info["mode"] == "garbage-models":
            return web.Response(text="<html>login</html>", content_type="text/html")
        return web.json_response({"data": [{"id": "router-r1"}]})

    async def completions(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        body = await request.json()
        calls[mode] = calls.get(mode, 0) + 1
        if mode.startswith("route-then-"):
            if calls[mode] == 1:
                return web.json_response({"choices": [{"index": 0, "text": ROUTE}]})
            mode = mode.removeprefix("route-then-")
        if mode == "garbage":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if mode == "error":
            return web.json_response({"object": "error", "message": "model not loaded"})
        if mode == "cut":
            reply = web.StreamResponse(headers={"Content-Type": "application/json"})
            reply.content_length = 500
            await reply.prepare(request)
            await reply.write(b'{"choices": [{"index": 0, "te')
            assert request.transport is not None
            request.transport.close()
            return reply
        if mode == "hang":
            await asyncio.wait_for(stopping.wait(), 5)
        return web.json_response({"choices": [{"index": i, "text": "<think>x</think><answer>y</answer>"}
                                              for i, _ in enumerate(body["prompt"])]})

    async def stop(app: web.Application) -> None:
        stopping.set()

    app = web.Application()
    app.on_shutdown.append(stop)
    app.router.add_get("/{mode}/v1/models", models)
    app.router.add_post("/{mode}/v1/completions", completions)
    return app


async def _ask(mode: str, budget: Budget, *, load_s: float = 0.0):
    """Run the graph on the policy served at ``/MODE/v1``; the policy loads on first use, in ``load_s``."""
    root, runner = await serve_on_loopback(_app())
    try:
        policy = await asyncio.to_thread(ServedPolicy, f"{root}/{mode}/v1", CharTokenizer())

        def load() -> ServedPolicy:
            time.sleep(load_s)  # what `ask --policy-url` spends reading the tokenizer, inside the task
            return policy

        pool, backend = echo_pool()
        graph = AgentGraph("router_r1").add_node("think_route", ThinkRouteAgent(load), stage="route")
        return await graph.compile(pool=pool, router=make_router("cheapest"), budget=budget).arun("Who wrote Dune?"), backend
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("mode", "says"), [
    ("garbage", "the reply is not a completion (JSONDecodeError"),
    ("error", """the reply is not a completion (ValueError: no 'choices' list in {"object": "error", "message": "model not loaded"})"""),
    ("cut", "the reply was cut short (IncompleteRead)"),
])
async def test_a_failing_server_with_nothing_to_answer_is_one_line(mode, says):
    with pytest.raises(PolicyServerError) as failed:
        await _ask(mode, Budget(usd=1.0))
    text = str(failed.value)
    assert text.startswith("policy server http://127.0.0.1:") and says in text and "\n" not in text


async def test_a_failure_after_a_paid_route_fails_the_task_on_one_line():
    with pytest.raises(PolicyServerError, match="the reply was cut short"):
        await _ask("route-then-cut", Budget(usd=1.0))


async def test_a_hanging_server_ends_the_task_when_its_time_is_spent():
    started = time.monotonic()
    result, backend = await _ask("route-then-hang", Budget(usd=1.0, seconds=0.6))
    assert time.monotonic() - started < 3  # was: the 120 s socket timeout, then a TimeoutError traceback
    r1 = result.state["context"]["router_r1"]
    assert result.status == "budget_exhausted" and result.answer == "small says hi"
    assert r1["turns"][-1]["kind"] == "stopped" and "the task's time is spent" in r1["turns"][-1]["information"]
    assert result.cost_usd == pytest.approx((10 * 1.0 + 4 * 2.0) / 1e6)  # the bill: the one routed call


async def test_a_task_whose_time_is_spent_before_the_first_turn_asks_no_completion():
    result, backend = await _ask("hang", Budget(usd=1.0, seconds=0.2), load_s=0.3)
    r1 = result.state["context"]["router_r1"]
    assert result.status == "budget_exhausted" and backend.calls == []
    assert [t["kind"] for t in r1["turns"]] == ["stopped"]  # was (CLI): 'no completion within -0.676 s'
    assert r1["turns"][0]["information"] == "the policy did not start its turn: the task's time is spent"


async def test_a_server_whose_model_list_is_garbage_is_refused_naming_it():
    root, runner = await serve_on_loopback(_app())
    try:
        with pytest.raises(ConfigurationError, match="policy server .*/garbage-models/v1: GET /models answered no model list"):
            await asyncio.to_thread(ServedPolicy, f"{root}/garbage-models/v1", CharTokenizer())
    finally:
        await runner.cleanup()


def test_the_error_line_is_json_free():
    assert json.dumps(str(PolicyServerError("http://h/v1", "x"))) == '"policy server http://h/v1: x"'
