"""`agentroute serve` passes on why an answer ended: a provider's content filter that stopped an
answer midway is ``content_filter`` to the client, as OpenAI's API says, not ``stop`` (before, the
client could not tell a blocked answer from a finished one)."""

from __future__ import annotations

import openai
import pytest

from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.routers import make_router
from agentroute.serve import ServerThread
from tests.fixtures_reply_server import ANSWER, ReplyServer

pytest.importorskip("fastapi")


def cut_pool(url: str) -> ModelPool:
    card = ModelCard(id="cutoff", backend="openai", model="cutoff", base_url=url, input_price=1.0, output_price=2.0)
    return ModelPool([card], {"openai": OpenAIBackend()})


@pytest.mark.parametrize("model", ["cutoff", "router"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_stopped_by_the_content_filter_says_so(model: str, stream: bool) -> None:
    with ReplyServer() as upstream, ServerThread(cut_pool(upstream.url), router=make_router("cheapest")) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x")
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        if stream:
            chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=16, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        else:
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=16)
            text, reasons = reply.choices[0].message.content, [reply.choices[0].finish_reason]
    assert text == "".join(ANSWER[:2])
    assert reasons == ["content_filter"]
