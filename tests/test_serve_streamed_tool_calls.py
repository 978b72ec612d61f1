"""Parallel tool calls an upstream streams in pieces, and OpenAI's custom tool calls, reach the
clients of ``agentroute serve`` whole and apart: on a card (``openai`` backend, streamed or plain;
``litellm``) and on the routed model, asked plainly or streamed, read by the openai SDK (sync, and async with
its stream accumulator) and LangChain's ``ChatOpenAI``.

The upstream streams the calls as providers do: OpenAI interleaves two calls' argument pieces under
their own ``index``; Ollama streams every call of a batch at ``index`` 0 (older builds send no
``index``), the calls told apart by their ``id``; Poolside (as mlx-openai-server did) sends a
call's later pieces under another ``id`` than its first, the call told by its ``index`` and its
name coming only once. Was: the Ollama shapes became one call named
``get_weatherget_time`` with the arguments of both run together; a custom tool call
(``{"type": "custom", "custom": {"name", "input"}}``) was a 502 ``bad_upstream_reply`` ("names no
function")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from agentroute.pool import ModelPool
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.pool.card import ModelCard
from agentroute.serve import ServerThread
from tests.fixtures_reply_server import JSONHandler, LoopbackServer
from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401

WEATHER = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TIME = {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}
GREP = {"id": "call_c", "type": "custom", "custom": {"name": "grep", "input": "TODO src/"}}
#: the calls each upstream shape makes (the user message names the shape)
CALLS: dict[str, list[dict[str, Any]]] = {
    "openai": [WEATHER, TIME],
    "same-index": [WEATHER, TIME],
    "no-index": [WEATHER, TIME],
    "custom": [GREP, WEATHER],
    "id-per-piece": [WEATHER, TIME],
}
FUNCTION_SHAPES = ["openai", "same-index", "no-index", "id-per-piece"]


def fragments(call: dict[str, Any], index: int | None) -> list[dict[str, Any]]:
    """``call`` as a stream sends it: its id and name first, then its arguments (or input) in two pieces."""
    kind = call["type"]
    field = "arguments" if kind == "function" else "input"
    name, text = call[kind]["name"], call[kind][field]
    parts = [
        {"id": call["id"], "type": kind, kind: {"name": name, field: ""}},
        {kind: {field: text[: len(text) // 2]}},
        {kind: {field: text[len(text) // 2 :]}},
    ]
    return [part if index is None else {"index": index, **part} for part in parts]


def streamed(shape: str) -> list[list[dict[str, Any]]]:
    """The ``delta.tool_calls`` of each chunk the upstream streams for ``shape``."""
    first, second = CALLS[shape]
    if shape in ("openai", "custom"):  # each call at its own index, their pieces interleaved
        return [[part] for pair in zip(fragments(first, 0), fragments(second, 1), strict=True) for part in pair]
    if shape == "id-per-piece":  # Poolside: each call at its own index, every later piece under a new id
        return [
            [part if "id" in part else {**part, "id": f"{call['id']}_{n}"} for n, part in enumerate(fragments(call, i))]
            for i, call in enumerate((first, second))
        ]
    if shape == "same-index":  # Ollama: every call at index 0, one after the other
        return [[part] for call in (first, second) for part in fragments(call, 0)]
    return [[first], [second]]  # older Ollama: each call whole in its own chunk, no index


class _Upstream(JSONHandler):
    """An OpenAI-compatible provider whose reply is the tool calls of the shape the prompt names."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if (body := self.chat_body()) is None:
            return
        shape = body["messages"][-1]["content"]
        usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
        base = {"id": "r1", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": CALLS[shape]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            return self.send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}

        def delta(d: dict[str, Any], finish: str | None = None) -> None:
            self.send_event({**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})

        delta({"role": "assistant", "content": None})
        for calls in streamed(shape):
            delta({"tool_calls": calls})
        delta({}, "tool_calls")
        self.send_event({**chunk, "choices": [], "usage": usage})
        self.send_event("[DONE]")


@pytest.fixture(scope="module", params=["streamed", "plain", "litellm"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The served URL of a pool of one card in front of :class:`_Upstream`: an ``openai`` card that
    asks with a stream (the backend's default) or plainly, or a ``litellm`` one (streamed); served
    with a router too."""
    with LoopbackServer(_Upstream) as upstream:
        price = {"base_url": upstream.url, "input_price": 1.0, "output_price": 1.0}
        if request.param == "litellm":
            pytest.importorskip("litellm")
            pool = ModelPool([ModelCard(id="upstream", backend="litellm", model="openai/m", **price)])
        else:
            card = ModelCard(id="upstream", backend=request.param, model="m", **price)
            pool = ModelPool([card], backends={request.param: OpenAIBackend(stream=request.param == "streamed")})
        with ServerThread(pool, preload=False, router="cheapest") as server:
            yield server.url


def ask(model: str, shape: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": shape}]}


def dumped(calls: list[Any] | None) -> list[dict[str, Any]]:
    """The SDK's tool calls as JSON, without what its stream helper adds (``index``, ``parsed_arguments``)."""
    found = [call.model_dump(exclude_none=True) for call in calls or []]
    for call in found:
        call.pop("index", None)
        call.get("function", {}).pop("parsed_arguments", None)
    return found


def merged(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool call deltas put together by their ``index``, each field's pieces joined."""
    calls: dict[int, dict[str, Any]] = {}
    for part in deltas:
        call = calls.setdefault(part["index"], {})
        for key, value in part.items():
            if isinstance(value, dict):  # the function's (or custom tool's) pieces
                body = call.setdefault(key, {})
                for field, piece in value.items():
                    body[field] = body.get(field, "") + (piece or "")
            elif key != "index" and value is not None:
                call[key] = value
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("model", ["upstream", "router"])
@pytest.mark.parametrize("shape", list(CALLS))
def test_the_sdk_gets_each_call_whole_plain_and_streamed(url: str, model: str, shape: str) -> None:
    client = sdk_client(url)
    choice = client.chat.completions.create(**ask(model, shape)).choices[0]
    assert (choice.finish_reason, dumped(choice.message.tool_calls)) == ("tool_calls", CALLS[shape])
    chunks = list(client.chat.completions.create(**ask(model, shape), stream=True))
    deltas = [call.model_dump() for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert merged(deltas) == CALLS[shape]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    # the SDK's own accumulator (its stream helper reads a streamed custom call's body as a dict, and fails on it)
    if shape != "custom":
        with client.chat.completions.stream(**ask(model, shape)) as stream:
            final = stream.get_final_completion().choices[0]
        assert (final.finish_reason, dumped(final.message.tool_calls)) == ("tool_calls", CALLS[shape])


@pytest.mark.parametrize("model", ["upstream", "router"])
def test_the_async_sdk_accumulates_the_streamed_deltas_into_separate_calls(url: str, model: str) -> None:
    """As the SDK's docs put a streamed reply together: each delta's tool calls by their ``index``."""

    async def main() -> dict[int, dict[str, str]]:
        client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        calls: dict[int, dict[str, str]] = {}
        try:
            async for chunk in await client.chat.completions.create(**ask(model, "same-index"), stream=True):
                for part in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += part.id or ""
                    call["name"] += part.function.name or "" if part.function else ""
                    call["arguments"] += part.function.arguments or "" if part.function else ""
        finally:
            await client.close()
        return calls

    calls = asyncio.run(main())
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())] == [
        ("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"tz": "CET"}),
    ]  # fmt: skip


@pytest.mark.parametrize("model", ["upstream", "router"])
@pytest.mark.parametrize("shape", FUNCTION_SHAPES)
def test_langchain_chat_openai_gets_both_calls_invoked_and_streamed(url: str, model: str, shape: str) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(model=model, base_url=url, api_key="x", max_retries=0)
    expected = [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a", "type": "tool_call"},
        {"name": "get_time", "args": {"tz": "CET"}, "id": "call_b", "type": "tool_call"},
    ]
    assert llm.invoke(shape).tool_calls == expected
    merged = None
    for chunk in llm.stream(shape):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and (merged.tool_calls, merged.invalid_tool_calls) == (expected, [])
