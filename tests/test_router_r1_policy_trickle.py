"""`--policy-url` pointing at a policy server that trickles its reply (a byte every 0.2 s, headers or
body), as a served task meets it: the task ends ``budget_exhausted`` when its time is spent.

Was: urllib's timeout is per read, so a server sending a byte more often than the task's time left
held the task until it had sent everything (here 6 s past a 1 s budget; a server that trickles for
ever, for ever); now the whole request has the task's deadline.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from agentroute import AgentGraph, make_router
from agentroute.budget import Budget
from agentroute.routers.router_r1.agent import ThinkRouteAgent
from agentroute.routers.router_r1.served import PolicyServerError, ServedPolicy

sys.path.insert(0, str(Path(__file__).parent))
from helpers import serve_on_loopback  # noqa: E402
from test_router_r1 import CharTokenizer, echo_pool  # noqa: E402

ROUTE = b'{"choices": [{"index": 0, "text": "<think>ask</think><route> small: who wrote Dune? </route>"}]}'
DRIP_S = 0.2  # one byte this often: far less than the task's time left (what urllib's timeout is per read)
BUDGET_S = 1.0
CANCELLATION_S = 0.4  # one cancellation on 2 shared cores (issue 10: the budget + 100 ms + one cancellation)


def _app() -> web.Application:
    """``/MODE/v1/completions``: the first call routes; the next trickles its body (``body``) or its
    status line and headers (``headers``), 30 bytes (6 s), then stops."""
    calls: dict[str, int] = {}

    async def models(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": [{"id": "router-r1"}]})

    async def completions(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        await request.read()
        calls[mode] = calls.get(mode, 0) + 1
        if calls[mode] == 1:
            return web.Response(body=ROUTE, content_type="application/json")
        assert request.transport is not None
        transport = request.transport
        if mode == "headers":  # the raw status line, a byte at a time
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"[:30]:
                if transport.is_closing():
                    break
                transport.write(bytes([byte]))
                await asyncio.sleep(DRIP_S)
            transport.close()
            return web.Response()  # never sent: the transport is closed
        reply = web.StreamResponse(headers={"Content-Type": "application/json"})
        reply.content_length = 30
        await reply.prepare(request)
        for _ in range(30):
            if transport.is_closing():
                break
            await reply.write(b" ")
            await asyncio.sleep(DRIP_S)
        return reply

    app = web.Application()
    app.router.add_get("/{mode}/v1/models", models)
    app.router.add_post("/{mode}/v1/completions", completions)
    return app


@pytest.mark.parametrize("mode", ["body", "headers"])
async def test_a_trickling_server_ends_the_task_when_its_time_is_spent(mode: str) -> None:
    root, runner = await serve_on_loopback(_app())
    try:
        policy = await asyncio.to_thread(ServedPolicy, f"{root}/{mode}/v1", CharTokenizer())
        pool, _ = echo_pool()
        graph = AgentGraph("router_r1").add_node("think_route", ThinkRouteAgent(lambda: policy), stage="route")
        app = graph.compile(pool=pool, router=make_router("cheapest"), budget=Budget(usd=1.0, seconds=BUDGET_S))
        started = time.monotonic()
        result = await asyncio.wait_for(app.arun("Who wrote Dune?"), 10)
        took = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert took < BUDGET_S + 0.1 + CANCELLATION_S, took  # was: 6 s, the whole trickle
    r1 = result.state["context"]["router_r1"]
    assert result.status == "budget_exhausted" and result.answer == "small says hi"
    assert r1["turns"][-1]["kind"] == "stopped" and "the task's time is spent" in r1["turns"][-1]["information"]


async def test_a_trickled_completion_is_one_timed_out_line() -> None:
    root, runner = await serve_on_loopback(_app())
    try:
        policy = await asyncio.to_thread(ServedPolicy, f"{root}/body/v1", CharTokenizer())
        await asyncio.to_thread(policy.generate, [[1, 2]], max_tokens=4)  # the route: the first call
        started = time.monotonic()
        with pytest.raises(PolicyServerError) as failed:
            await asyncio.to_thread(policy.generate, [[1, 2]], max_tokens=4, timeout_s=0.5)
        took = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert failed.value.timed_out and str(failed.value).endswith(": no completion within 0.5 s"), str(failed.value)
    assert took < 0.5 + 0.1 + CANCELLATION_S, took
