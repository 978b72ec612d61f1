"""A server's ``POST /tokenize`` count reserves no less than the server then bills.

vLLM renders more than the messages into a chat prompt: the request's ``reasoning_effort`` reaches
the chat template (as ``chat_template_kwargs`` ``reasoning_effort`` and ``enable_thinking``; a
Qwen3 template then closes an empty ``<think>`` block), its ``response_format`` reaches the
renderer. vLLM's ``TokenizeChatRequest`` takes ``chat_template_kwargs`` (and ``tools``) but no
``response_format``. Was: ``/tokenize`` was sent the messages alone, so an honest server counted
fewer prompt tokens than it billed (the reservation below the bill, an ``overrun`` audited and the
endpoint distrusted only afterwards).

The server below is vLLM's protocol on 127.0.0.1 with SmolLM2's real tokenizer and a template that
renders those fields; it bills what it rendered.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentroute import Budget, Dispatcher, ModelCard, ModelPool, make_router
from agentroute.dispatch import RequestOptions
from agentroute.pool.backends.counting import byte_bound
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.types import CompletionRequest
from tests.fixtures_adversary import ChatTokenizer
from tests.helpers import tokenizing_server

pytest.importorskip("tokenizers")

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a prime above 10."}]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"prime": {"type": "integer"}}, "required": ["prime"]},
    },
}
#: Provider fields that change the rendered prompt, as a RequestOptions' keyword arguments.
FIELDS = {
    "reasoning_effort_none": {"reasoning_effort": "none"},
    "reasoning_effort_high": {"reasoning_effort": "high"},
    "response_format": {"response_format": SCHEMA},
}


def render(
    tok: ChatTokenizer,
    messages: list[dict[str, Any]],
    *,
    tools: list[Any] | None = None,
    response_format: dict[str, Any] | None = None,
    enable_thinking: bool | None = None,
    **_: Any,
) -> str:
    """SmolLM2's ChatML with what Qwen-style templates add: the tools and the answer's schema in a
    system block, an empty think block when thinking is switched off."""
    extra = ""
    if tools:
        extra += "# Tools\n<tools>\n" + "\n".join(json.dumps(t) for t in tools) + "\n</tools>\n"
    if response_format:
        extra += "Reply with JSON matching:\n" + json.dumps(response_format) + "\n"
    text = (f"<|im_start|>system\n{extra}<|im_end|>\n" if extra else "") + tok.template(messages)
    return text + ("<think>\n\n</think>\n\n" if enable_thinking is False else "")


class VLLMLike:
    """``POST /tokenize`` and ``/v1/chat/completions`` as vLLM reads them; bills what it rendered."""

    def __init__(self, tok: ChatTokenizer) -> None:
        self.tok = tok
        self.tokenize_bodies: list[dict[str, Any]] = []
        self.billed: list[int] = []

    async def tokenize(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        self.tokenize_bodies.append(body)
        if "messages" not in body:
            count = self.tok.count_text(body.get("prompt", ""))
        else:  # TokenizeChatRequest: tools and chat_template_kwargs reach the template, nothing else
            kwargs = dict(body.get("chat_template_kwargs") or {})
            count = self.tok.count_text(render(self.tok, body["messages"], tools=body.get("tools"), **kwargs))
        return web.json_response({"count": count, "max_model_len": 8192, "tokens": list(range(count))})

    async def chat(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        kwargs = dict(body.get("chat_template_kwargs") or {})
        effort = body.get("reasoning_effort")
        if effort is not None:  # ChatCompletionRequest.build_chat_params
            kwargs.setdefault("reasoning_effort", effort)
            kwargs.setdefault("enable_thinking", effort != "none")
        prompt = self.tok.count_text(
            render(self.tok, body["messages"], tools=body.get("tools"), response_format=body.get("response_format"), **kwargs)
        )
        self.billed.append(prompt)
        usage = {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1}
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"], "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
        })  # fmt: skip


@contextlib.asynccontextmanager
async def vllm_like() -> AsyncIterator[tuple[VLLMLike, ModelCard]]:
    server = VLLMLike(ChatTokenizer())
    async with tokenizing_server(server) as card:
        yield server, card


@pytest.mark.parametrize("fields", list(FIELDS.values()), ids=list(FIELDS))
async def test_the_count_reserved_is_never_below_the_bill(fields: dict[str, Any]) -> None:
    backend = OpenAIBackend(stream=False)
    async with vllm_like() as (server, card):
        request = CompletionRequest(model="m", messages=MESSAGES, max_tokens=1)
        RequestOptions(**fields).apply(request)
        reserved = await backend.aprompt_tokens(request, card)
        completion = await backend.complete(request, card)
        assert completion.tokens_in == server.billed[-1]
        assert reserved >= completion.tokens_in, (reserved, completion.tokens_in)
        assert backend.prompt_tokens(request, card) >= completion.tokens_in  # the count cached for the step
        assert backend.tokenize.supported.get(card.base_url) is not False  # an honest server stays trusted
        await backend.aclose()


async def test_a_plain_chat_is_counted_as_before() -> None:
    """No provider fields: one ``/tokenize`` body as before, its count exact (not the byte bound)."""
    backend = OpenAIBackend(stream=False)
    async with vllm_like() as (server, card):
        request = CompletionRequest(model="m", messages=MESSAGES, max_tokens=1)
        reserved = await backend.aprompt_tokens(request, card)
        completion = await backend.complete(request, card)
        assert reserved == completion.tokens_in < byte_bound(MESSAGES)
        assert server.tokenize_bodies == [{"model": "m", "messages": MESSAGES, "add_generation_prompt": True}]
        await backend.aclose()


@pytest.mark.parametrize("fields", list(FIELDS.values()), ids=list(FIELDS))
async def test_a_token_budget_step_is_not_overrun(fields: dict[str, Any]) -> None:
    """Where users meet it: a routed step under a token budget the byte bound cannot afford (so the
    dispatcher asks ``/tokenize``). Was: the step reserved the messages' count and the bill was
    above it (an ``overrun`` audited, the endpoint distrusted)."""
    async with vllm_like() as (server, card):
        pool = ModelPool([card], {"openai": OpenAIBackend(stream=False)})
        dispatcher = Dispatcher(pool, make_router("cheapest"), retries=0)
        limit = byte_bound(MESSAGES)  # the bound and max_tokens exceed it, the real count does not
        run = dispatcher.start("q", budget=Budget(tokens=limit))
        try:
            await dispatcher.step(run, role="executor", stage="execute", prompt="Answer briefly.",
                                  input=MESSAGES[1]["content"], options=RequestOptions(**fields))  # fmt: skip
        finally:
            await pool.aclose()
        assert [e.detail for e in run.context.get("audit", []) if e.kind == "overrun"] == []
        assert all(billed + 1 <= limit for billed in server.billed)
