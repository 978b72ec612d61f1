"""A reasoning model's thoughts reach LangGraph users: the chat model run's final ``AIMessage``
carries them in ``additional_kwargs["reasoning_content"]``, as LangChain's DeepSeek and OpenAI chat
models put them (before: billed, kept in the step's ``raw``, and never shown)."""

from __future__ import annotations

import asyncio

import pytest

from agentroute import AgentGraph, make_router
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.openai import OpenAIBackend
from tests.fixtures_reply_server import ANSWER, REASONING, ReplyServer


@pytest.mark.parametrize("model", ["reasoner", "reasoner2", "echo"])
def test_the_chat_model_end_event_carries_the_reasoning(model: str) -> None:
    async def events(url: str) -> list[dict]:
        card = ModelCard(id="m", backend="openai", model=model, base_url=url, input_price=1.0, output_price=2.0)
        app = AgentGraph("one").add_role("executor", prompt="Answer.").compile(
            pool=ModelPool([card], {"openai": OpenAIBackend()}), router=make_router("cheapest")
        )
        return [e async for e in app.astream_events({"query": "Capital of France?"}, version="v2")]

    with ReplyServer() as server:
        got = asyncio.run(events(server.url))
    end = next(e for e in got if e["event"] == "on_chat_model_end")["data"]["output"]
    if model == "echo":  # no thoughts: nothing added
        assert "reasoning_content" not in end.additional_kwargs
    else:
        assert end.content == "".join(ANSWER)
        assert end.additional_kwargs["reasoning_content"] == "".join(REASONING)
