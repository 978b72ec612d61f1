"""A routed request whose ``max_tokens`` no model can afford at its worst case under the budget: the
402 says that ``max_tokens`` priced the call out (before, it blamed the budget alone: a user raised
the budget for a request that asked for a billion tokens)."""

from __future__ import annotations

import openai
import pytest

from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import ReplyServer

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402


def test_a_max_tokens_priced_out_of_the_budget_says_so() -> None:
    with ReplyServer() as upstream:
        card = ModelCard(id="echo", backend="openai", model="echo", base_url=upstream.url,
                         input_price=1.0, output_price=2.0)  # fmt: skip
        with ServerThread(ModelPool([card]), router="cheapest", budget={"usd": 0.01}) as server:
            cli = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)

            def ask(**fields: object) -> openai.types.chat.ChatCompletion:
                return cli.chat.completions.create(
                    model="router", messages=[{"role": "user", "content": "Say hi."}], **fields
                )

            with pytest.raises(openai.APIStatusError) as info:
                ask(max_tokens=10**9)
            assert info.value.status_code == 402 and info.value.code == "budget_exhausted"
            message = info.value.message
            assert "max_tokens 1000000000" in message and "lower max_tokens" in message, message
            assert upstream.requests == []  # nothing was called
            assert ask(max_tokens=16).choices[0].message.content  # a sane cap: the same budget answers
            with pytest.raises(openai.APIStatusError) as info:
                ask(max_tokens=16, extra_body={"agentroute": {"budget": {"calls": 0}}})
            assert "max_tokens" not in info.value.message  # priced in: not blamed
