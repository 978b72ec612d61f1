"""A plain :class:`OpenAIPolicy` (not only the CLI's ``--policy-url`` policy) against a server that
trickles its reply, a byte every 0.1 s: the whole request has its deadline.

Was: the deadline lived in ``ServedPolicy`` alone; ``OpenAIPolicy`` used urllib's per-read timeout, so
``generate(..., timeout_s=0.3)`` (and ``GET /models`` under ``timeout_s=``) waited out the whole trickle;
then the body of an error reply (a 400 whose message trickles) was still read past the deadline.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from agentroute.training.lm_policy import OpenAIPolicy

sys.path.insert(0, str(Path(__file__).parent))
from helpers import serve_on_loopback  # noqa: E402
from test_router_r1 import CharTokenizer  # noqa: E402

DRIP_S = 0.1  # a byte this often: each read waits far less than the deadline
WAIT_S = 0.3
SLACK_S = 0.5  # a timer thread's wake-up on 2 shared cores


async def _trickle(request: web.Request) -> web.StreamResponse:
    """A JSON reply of 40 bytes, one every ``DRIP_S`` (4 s in all); ``/error/…``: a 400's."""
    await request.read()
    status = 400 if request.path.startswith("/error/") else 200
    reply = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    reply.content_length = 40
    await reply.prepare(request)
    assert request.transport is not None
    for _ in range(40):
        if request.transport.is_closing():
            break
        await reply.write(b" ")
        await asyncio.sleep(DRIP_S)
    return reply


@pytest.mark.parametrize("call", ["completions", "models", "error"])
async def test_a_trickled_reply_is_cut_at_the_deadline(call: str) -> None:
    app = web.Application()
    app.router.add_get("/v1/models", _trickle)
    app.router.add_post("/v1/completions", _trickle)
    app.router.add_post("/error/v1/completions", _trickle)
    root, runner = await serve_on_loopback(app)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"no reply within {WAIT_S:g} s"):
            if call == "models":  # the model list, under the policy's own timeout
                await asyncio.to_thread(OpenAIPolicy, f"{root}/v1", CharTokenizer(), timeout_s=WAIT_S)
            else:  # "error": an error status whose message trickles (was: read past the deadline, 4 s)
                base = f"{root}/error/v1" if call == "error" else f"{root}/v1"
                policy = OpenAIPolicy(base, CharTokenizer(), model="router-r1")
                await asyncio.to_thread(policy.generate, [[1, 2]], max_tokens=4, timeout_s=WAIT_S)
        took = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert took < WAIT_S + SLACK_S, took  # was: 4 s, the whole trickle
