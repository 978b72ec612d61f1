"""A stream labelled ``Content-Type: application/json`` is read as the stream it is (review of
bef1b41: the openai backend read every JSON-labelled reply to a stream request as one whole JSON
body; a server that streams under that label, as Foundry Local did (microsoft/foundry-dev-tools
issue 195), failed "the reply is not an event stream (no chunks)", charged its worst case, its
answer lost; before bef1b41 it was read). Real aiohttp server on 127.0.0.1, both backends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.test_provider_body_bounds import ROUTES, chat_server, one_step


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _chat(request: web.Request) -> web.StreamResponse:
    common = {"id": "r1", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(_event({**common, "choices": [{"index": 0, "delta": {"content": "Paris."}, "finish_reason": None}]}))
    await response.write(_event({**common, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    await response.write(_event({**common, "choices": [], "usage": usage}) + b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@pytest.fixture
async def provider() -> AsyncIterator[str]:
    async with chat_server(_chat) as url:
        yield url


@pytest.mark.parametrize(("backend", "prefix"), ROUTES)
async def test_a_stream_labelled_json_keeps_its_answer(provider: str, backend: str, prefix: str) -> None:
    step, run, card, _ = await one_step(provider, backend, prefix, "labelled", stream=True, timeout_s=8.0)
    assert (step.status, step.output, step.tokens_in, step.tokens_out) == ("ok", "Paris.", 7, 2), step.error
    assert run.ledger.spent["usd"] == pytest.approx(card.usd(7, 2))
