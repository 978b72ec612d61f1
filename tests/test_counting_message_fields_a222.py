"""A message's other fields (``name``, an assistant's ``tool_calls``, a tool's ``tool_call_id``) are
counted: a reservation is never below what a server that renders them bills.

Was: ``messages_key`` keyed a chat by (role, content) only, so a cached count of a chat without a
``name`` or ``tool_calls`` was reused for the same chat with them (``/tokenize``'s cache, tiktoken's);
``byte_bound`` counted only role and content, so an assistant turn that is all ``tool_calls`` was
bounded at about nothing.

The server is vLLM's protocol on 127.0.0.1 with SmolLM2's real tokenizer and a ChatML template that
renders those fields as Qwen-style templates do; it bills what it rendered.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentroute.pool.backends.counting import byte_bound, messages_key, openai_chat_tokens, openai_encoding
from agentroute.pool.backends.litellm import LiteLLMBackend
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.pool.card import ModelCard
from agentroute.types import CompletionRequest
from tests.fixtures_adversary import ChatTokenizer
from tests.helpers import billed_reply, tokenizing_server

pytest.importorskip("tokenizers")

SYSTEM = {"role": "system", "content": "Answer briefly."}
CALL = {
    "id": "call_7f3a9c2e",
    "type": "function",
    "function": {"name": "search_documents", "arguments": json.dumps({"query": "capital of France " * 40})},
}
#: Chats whose role and content are those of PLAIN (as a cache key once saw them), with more fields.
PLAIN = [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""},
         {"role": "user", "content": "Found it?"}]  # fmt: skip
WITH = {
    "name": [SYSTEM, {"role": "user", "content": "Hi", "name": "🦊" * 40}, PLAIN[2], PLAIN[3]],
    "tool_calls": [SYSTEM, PLAIN[1], {"role": "assistant", "content": "", "tool_calls": [CALL]}, PLAIN[3]],
    "tool_call_id": [SYSTEM, PLAIN[1], {"role": "assistant", "content": "", "tool_call_id": "call_" + "9" * 120},
                     PLAIN[3]],
}  # fmt: skip


def render(messages: list[dict[str, Any]]) -> str:
    """ChatML with the fields Qwen-style templates render: a speaker's name, tool calls as JSON."""
    parts = []
    for m in messages:
        head = m.get("role", "") + (f" name={m['name']}" if m.get("name") else "")
        body = m.get("content") or ""
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            body += "\n<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments")})
            body += "\n</tool_call>"
        if m.get("tool_call_id"):
            body = f"<tool_response id={m['tool_call_id']}>\n{body}\n</tool_response>"
        parts.append(f"<|im_start|>{head}\n{body}<|im_end|>\n")
    return "".join(parts) + "<|im_start|>assistant\n"


class Renderer:
    """``POST /tokenize`` (when ``tokenize``) and ``/v1/chat/completions``; bills what it rendered."""

    def __init__(self, *, tokenize: bool) -> None:
        self.tok, self.has_tokenize = ChatTokenizer(), tokenize
        self.billed: list[int] = []

    async def tokenize(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        if not self.has_tokenize:
            return web.json_response({"error": "no tokenize"}, status=404)
        count = self.tok.count_text(render(body["messages"]) if "messages" in body else body.get("prompt", ""))
        return web.json_response({"count": count, "max_model_len": 8192, "tokens": list(range(count))})

    async def chat(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        prompt = self.tok.count_text(render(body["messages"]))
        self.billed.append(prompt)
        return web.json_response(billed_reply(body["model"], prompt))



@contextlib.asynccontextmanager
async def renderer(*, tokenize: bool) -> AsyncIterator[tuple[Renderer, ModelCard]]:
    server = Renderer(tokenize=tokenize)
    async with tokenizing_server(server) as card:
        yield server, card


async def reserve_and_call(backend: OpenAIBackend, card: ModelCard, messages: list[dict[str, Any]]) -> tuple[int, int]:
    """What a step reserves for ``messages`` (asked as the dispatcher asks), and what was billed."""
    request = CompletionRequest(model="m", messages=messages, max_tokens=1)
    reserved = await backend.aprompt_tokens(request, card)
    assert backend.prompt_tokens(request, card) == reserved  # the count the step's plan reads
    completion = await backend.complete(request, card)
    return reserved, int(completion.tokens_in or 0)


@pytest.mark.parametrize("field", list(WITH))
async def test_a_count_cached_without_a_field_is_not_reused_with_it(field: str) -> None:
    """``/tokenize`` counted the plain chat; the same chat with ``field`` is counted again."""
    backend = OpenAIBackend(stream=False)
    async with renderer(tokenize=True) as (server, card):
        reserved, billed = await reserve_and_call(backend, card, PLAIN)
        assert reserved == billed  # the server's exact count
        reserved, billed = await reserve_and_call(backend, card, WITH[field])
        await backend.aclose()
    assert billed > server.billed[0]  # the field is billed
    assert reserved >= billed, (field, reserved, billed)
    assert backend.tokenize.supported.get(card.base_url) is True  # an honest server stays trusted


@pytest.mark.parametrize("field", ["tool_calls", "tool_call_id", "name"])
async def test_the_byte_bound_is_never_below_the_bill(field: str) -> None:
    """A server without ``/tokenize``: the bound reserves, the fields' bytes included."""
    backend = OpenAIBackend(stream=False)
    async with renderer(tokenize=False) as (_, card):
        reserved, billed = await reserve_and_call(backend, card, WITH[field])
        await backend.aclose()
    assert reserved == byte_bound(WITH[field])
    assert reserved >= billed, (field, reserved, billed)


@pytest.mark.parametrize("field", list(WITH))
def test_tiktoken_counts_are_cached_per_field(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenAI model on OpenAI's endpoint (tiktoken, offline): the count of a chat with ``field``
    is never the cached count of the chat without it, and covers what the field renders."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    encoding = openai_encoding("gpt-4o-mini")
    if encoding is None:
        pytest.skip("no local copy of tiktoken's o200k_base")
    card = ModelCard(id="g", backend="litellm", model="openai/gpt-4o-mini", input_price=1.0, output_price=1.0)
    backend = LiteLLMBackend()
    plain = backend.prompt_tokens(CompletionRequest(model="g", messages=PLAIN), card)
    assert plain == openai_chat_tokens(encoding, PLAIN)
    counted = backend.prompt_tokens(CompletionRequest(model="g", messages=WITH[field]), card)
    assert counted > plain
    if field == "name":  # OpenAI's cookbook formula, exact
        assert counted == openai_chat_tokens(encoding, WITH[field])
    else:  # OpenAI does not publish how it renders them: at least their JSON's tokens
        value = WITH[field][2][field]
        shown = len(encoding.encode(value if isinstance(value, str) else json.dumps(value), disallowed_special=()))
        assert counted >= plain + shown, (counted, plain, shown)


def test_keys_tell_fields_apart() -> None:
    keys = {messages_key(chat) for chat in [PLAIN, *WITH.values()]}
    assert len(keys) == 1 + len(WITH)
    # the same fields in another order are the same chat
    reordered = [dict(reversed(list(m.items()))) for m in WITH["tool_calls"]]
    assert messages_key(reordered) == messages_key(WITH["tool_calls"])
