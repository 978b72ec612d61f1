"""A self-hosted server's ``POST /tokenize`` reply is read only as far as a count can reach.

The reply holds one id per prompt token, so its size follows from the prompt's byte bound
(:func:`~agentroute.pool.backends.counting.tokenize_reply_limit`). A server that answers with a
huge or endless body is no answer: the byte bound stays and the endpoint is not asked again. Was:
the body read whole (2 GiB: 56 s, 10 GiB of memory, then its count trusted).
"""

from __future__ import annotations

import time

import pytest

from agentroute.pool.backends.counting import byte_bound, text_bound
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest
from tests.helpers import serve_on_loopback

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "héllo " * 50}]
#: What the flooding server sends at most (finite, so that the code as it was ends too).
FLOOD_BYTES = 64 << 20


async def _server(reply):
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/tokenize", reply)
    return await serve_on_loopback(app)


def _card(root: str) -> ModelCard:
    return ModelCard(id="m", backend="openai", model="m", base_url=root + "/v1", input_price=1, output_price=1)


@pytest.mark.parametrize("kind", ["chat", "text", "preload"])
async def test_a_flooding_tokenize_reply_is_no_answer(kind: str) -> None:
    """A reply that opens like vLLM's and goes on for 64 MiB: cut at its bound, the bound stays (a
    dispatcher's step asks for at most 0.5 s, but a pool's preload and a reply's count without
    usage waited on the whole body)."""
    from aiohttp import web

    sent = [0]

    async def flood(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b"1, " * 21845
        try:
            await response.write(b'{"count": 7, "tokens": [')
            while sent[0] < FLOOD_BYTES:
                await response.write(chunk)
                sent[0] += len(chunk)
            await response.write(b"1]}")
        except (ConnectionError, RuntimeError):  # the client stopped reading
            pass
        return response

    root, runner = await _server(flood)
    backend = OpenAIBackend()
    try:
        card = _card(root)
        started = time.perf_counter()
        if kind == "preload":  # the pool's preload probes /tokenize with no 0.5 s cap around it
            await backend.preload(card)
            counted = await backend.aprompt_tokens(CompletionRequest(model="m", messages=MESSAGES), card)
            expected = byte_bound(MESSAGES)
        elif kind == "chat":
            counted = await backend.aprompt_tokens(CompletionRequest(model="m", messages=MESSAGES), card)
            expected = byte_bound(MESSAGES)
        else:
            counted = await backend.count_text("héllo " * 50, card)
            expected = text_bound("héllo " * 50)
        took = time.perf_counter() - started
        assert counted == expected  # the server's 7 is not believed
        assert backend.tokenize.supported == {card.base_url: False}  # and not asked again
        assert took < 2.0, took
        assert sent[0] < 16 << 20, sent[0]  # read no further than the bound (plus socket buffers)
    finally:
        await backend.aclose()
        await runner.cleanup()


async def test_the_longest_honest_reply_is_read() -> None:
    """vLLM's reply with as many ids as the bound allows, each of 10 digits, is within the limit."""
    from aiohttp import web

    tokens = byte_bound(MESSAGES)

    async def honest(request: web.Request) -> web.Response:
        await request.read()
        ids = ", ".join(["4294967295"] * tokens)
        body = f'{{"count": {tokens}, "max_model_len": 131072, "tokens": [{ids}], "token_strs": null}}'
        return web.Response(text=body, content_type="application/json")

    root, runner = await _server(honest)
    backend = OpenAIBackend()
    try:
        card = _card(root)
        assert await backend.aprompt_tokens(CompletionRequest(model="m", messages=MESSAGES), card) == tokens
        assert backend.tokenize.supported == {card.base_url: True}
    finally:
        await backend.aclose()
        await runner.cleanup()



async def test_a_tokenize_count_below_the_bill_is_trusted_once() -> None:
    """A server whose ``/tokenize`` says a quarter of what it then bills: the first task's
    reservation was below the bill (its overrun audited, the task stopped); the endpoint is asked no
    more, and every later task is reserved by the byte bound and billed within its limit (was: all
    10 tasks over their limit, each by ~1.8×)."""
    from aiohttp import web

    from agentroute import Budget, Dispatcher, make_router
    from tests.fixtures_adversary import Adversary, adversary_pool

    class Undercounting(Adversary):
        async def _tokenize(self, request: web.Request) -> web.Response:
            self.tokenize_requests += 1
            return web.json_response({"count": self.tokenizer.count_chat((await request.json())["messages"]) // 4})

    text = "请用三句话总结法国大革命的原因，并说明财政危机、启蒙思想和社会等级制度各自起到了什么作用。" * 3
    limit = 0.00008  # the byte bound does not fit, the real count does not fit, a quarter of it does
    with Undercounting(prices={"honest-small": (0.5, 1.0)}) as server:
        pool = adversary_pool(server.url, {"honest-small": (0.5, 1.0, "small", ("direct",))}, timeout_s=30.0, max_tokens=24)
        dispatcher = Dispatcher(pool, make_router("cheapest"), retries=2, backoff_s=0.01)
        try:
            audits = []
            for i in range(5):
                run = dispatcher.start(text, budget=Budget(usd=limit), task_id=f"t{i}")
                for _ in range(3):
                    step = await dispatcher.step(run, role="executor", stage="execute", prompt="Answer.", input=f"[task:t{i}] {text}")
                    if step is None or run.exhausted:
                        break
                task = dispatcher.finish(run)
                audits.append([e.kind for e in run.context.get("audit", [])])
                assert task.cost_usd >= server.bill(f"t{i}").usd - 1e-15  # stored as billed
            assert "overrun" in audits[0] and server.bill("t0").usd > limit  # the lie is found out once
            assert [server.bill(f"t{i}").usd for i in range(1, 5)] == [0.0] * 4  # then the bound holds
            assert all("overrun" not in a for a in audits[1:])
            assert server.tokenize_requests == 1
        finally:
            await pool.aclose()
