"""A user backend's ``raw["tool_calls"]`` that are not OpenAI's shape: ``agentroute serve`` answers
502 ``bad_upstream_reply`` (plain and streamed), as for other bad upstream fields (was: a 500
traceback, a stream cut without an error, or a reply the openai SDK reads as nonsense). OpenAI's
custom tool calls (``{"type": "custom", "custom": {"name", "input"}}``) pass (were refused as
malformed), and each streamed call's ``index`` is its place, not one a backend left on it (two
calls left at ``index`` 0 were merged by the SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from agentroute.pool import ModelPool
from agentroute.pool.backends.base import Backend
from agentroute.pool.card import ModelCard
from agentroute.serve import ServerThread
from agentroute.types import Completion, CompletionRequest
from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401

GOOD = [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]
#: OpenAI's custom tool call (free text for the tool, no JSON arguments), beside a function call
GOOD_CUSTOM = [{"id": "call_2", "type": "custom", "custom": {"name": "grep", "input": "TODO src/"}}, *GOOD]
#: two calls a backend left with their stream's ``index`` (Ollama streams every call at 0)
SECOND = {"id": "call_3", "type": "function", "function": {"name": "mul", "arguments": '{"b": 2}'}}
GOOD_INDEXED = [{"index": 0, **GOOD[0]}, {"index": 0, **SECOND}]
WELL_FORMED = {"good": GOOD, "good-custom": GOOD_CUSTOM, "good-indexed": GOOD_INDEXED}
SHAPES: dict[str, Any] = {
    **WELL_FORMED,
    "text": "add(1)",
    "mapping": {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}},
    "no-id": [{"type": "function", "function": {"name": "add", "arguments": "{}"}}],
    "id-none": [{"id": None, "type": "function", "function": {"name": "add", "arguments": "{}"}}],  # the openai backend's, when an upstream sent none
    "arguments-object": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": {"a": 1}}}],
    "not-function": [{"id": "call_1", "type": "tool", "function": {"name": "add", "arguments": "{}"}}],
    "items-text": ["add"],
    "custom-no-name": [{"id": "call_1", "type": "custom", "custom": {"input": "x"}}],
    "custom-input-object": [{"id": "call_1", "type": "custom", "custom": {"name": "grep", "input": {"q": 1}}}],
    "custom-function-body": [{"id": "call_1", "type": "custom", "function": {"name": "add", "arguments": "{}"}}],
}


class Calls(Backend):
    """Answers with the tool calls of the shape its prompt names (a user backend's own reply)."""

    name = "calls"

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        shape = SHAPES[request.messages[-1]["content"]]
        return Completion(
            text="", model=card.id, tokens_in=3, tokens_out=2, cost_usd=0.0, latency_ms=1.0,
            raw={"finish_reason": "tool_calls", "tool_calls": shape},
        )  # fmt: skip


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    card = ModelCard(id="caller", backend="calls", input_price=1.0, output_price=1.0)
    with ServerThread(ModelPool([card], backends={"calls": Calls()}), preload=False) as server:
        yield server.url


def ask(shape: str) -> dict[str, Any]:
    return {"model": "caller", "messages": [{"role": "user", "content": shape}]}


def calls_of(shape: str) -> list[tuple[Any, ...]]:
    """``(id, type, name, arguments or input)`` of each call of ``shape``."""
    return [(c["id"], c["type"], *c[c["type"]].values()) for c in SHAPES[shape]]  # name, then arguments or input


def read(call: Any) -> tuple[Any, ...]:
    """The same of a call the SDK read (a streamed custom call's body is a mapping: the SDK's delta type lacks it)."""
    if call.type == "custom" or getattr(call, "custom", None) is not None:
        body = call.custom if isinstance(call.custom, dict) else call.custom.model_dump()
        return call.id, "custom", body["name"], body["input"]
    return call.id, call.type, call.function.name, call.function.arguments


@pytest.mark.parametrize("shape", WELL_FORMED)
def test_well_formed_tool_calls_reach_the_sdk(url: str, shape: str) -> None:
    reply = sdk_client(url).chat.completions.create(**ask(shape))
    assert reply.choices[0].finish_reason == "tool_calls"
    assert [read(c) for c in reply.choices[0].message.tool_calls or []] == calls_of(shape)
    chunks = list(sdk_client(url).chat.completions.create(**ask(shape), stream=True))
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [(c.index, *read(c)) for c in calls] == [(i, *call) for i, call in enumerate(calls_of(shape))]


@pytest.mark.parametrize("shape", [s for s in SHAPES if s not in WELL_FORMED])
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_tool_calls_are_a_bad_upstream_reply(url: str, shape: str, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        reply = sdk_client(url).chat.completions.create(**ask(shape), stream=stream)
        list(reply) if stream else None  # type: ignore[call-overload]
    assert refused.value.status_code == 502, refused.value.response.text
    error = json.loads(refused.value.response.text)["error"]
    assert error["code"] == "bad_upstream_reply" and "'tool_calls'" in error["message"], error
    assert refused.value.response.headers["x-should-retry"] == "false"
