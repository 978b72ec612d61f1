"""The routed model (``model="router"``) passes a backend's tool calls and finish reason as direct
models do, plain and streamed, through the openai SDK; tool calls not in OpenAI's shape (a call
whose ``id`` is ``None``, as the openai backend builds one an upstream sent without an id) are the
same 502 ``bad_upstream_reply`` on both (was: a user backend's calls dropped on the router, its
``finish_reason`` ``stop``, so a client's tool-calling loop saw no call; a call without an id a 502
on a card and passed on the router)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from agentroute.pool import ModelPool
from agentroute.pool.backends.base import token_sink
from agentroute.pool.card import ModelCard
from agentroute.serve import ServerThread
from agentroute.types import Completion, CompletionRequest
from tests.fixtures_reply_server import JSONHandler, LoopbackServer
from tests.fixtures_sdk import close_sdk_clients, sdk_client  # noqa: F401
from tests.test_serve_tool_calls_shape import WELL_FORMED, Calls, calls_of, read


class StreamingCalls(Calls):
    """:class:`Calls` that streams a piece of text first (a backend of the user's that sends tokens)."""

    name = "streaming-calls"
    streams_tokens = True

    async def complete(self, request: CompletionRequest, card: ModelCard) -> Completion:
        if (sink := token_sink.get()) is not None:
            await sink("Let me add.")
        completion = await super().complete(request, card)
        completion.text = "Let me add."
        return completion


@pytest.fixture(scope="module", params=["calls", "streaming-calls"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """The server's URL and its one card's backend (the second streams text before its tool calls)."""
    card = ModelCard(id="caller", backend=request.param, input_price=1.0, output_price=1.0)
    pool = ModelPool([card], backends={"calls": Calls(), "streaming-calls": StreamingCalls()})
    with ServerThread(pool, preload=False, router="cheapest") as server:
        yield server.url, request.param


def ask(model: str, shape: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": shape}]}


@pytest.mark.parametrize("model", ["caller", "router"])
@pytest.mark.parametrize("shape", WELL_FORMED)
def test_the_routed_model_passes_tool_calls_as_a_card_does(served: tuple[str, str], model: str, shape: str) -> None:
    """Function calls, OpenAI's custom tool calls, and calls a backend left with its stream's ``index``
    (each gets its place as its delta's ``index``: was the one it had, so the SDK merged them)."""
    url = served[0]
    choice = sdk_client(url).chat.completions.create(**ask(model, shape)).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [read(c) for c in choice.message.tool_calls or []] == calls_of(shape)
    chunks = list(sdk_client(url).chat.completions.create(**ask(model, shape), stream=True))
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [(c.index, *read(c)) for c in calls] == [(i, *call) for i, call in enumerate(calls_of(shape))]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.parametrize("model", ["caller", "router"])
@pytest.mark.parametrize("shape", ["id-none", "text"])
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_tool_calls_are_one_rule_for_cards_and_the_router(
    served: tuple[str, str], model: str, shape: str, stream: bool
) -> None:
    url, backend = served
    with pytest.raises(openai.APIError) as refused:
        reply = sdk_client(url).chat.completions.create(**ask(model, shape), stream=stream)
        list(reply) if stream else None  # type: ignore[call-overload]
    if isinstance(refused.value, openai.APIStatusError):  # before any delta: a 502
        assert refused.value.status_code == 502, refused.value.response.text
        error = json.loads(refused.value.response.text)["error"]
    else:  # after the streamed text: the same error as the stream's last event
        assert stream and backend == "streaming-calls", refused.value
        error = {"code": refused.value.code, "message": refused.value.message}
    assert error["code"] == "bad_upstream_reply" and "caller: 'tool_calls'" in error["message"], error
    assert '"id"' in error["message"] if shape == "id-none" else "not a list" in error["message"], error


class _NoId(JSONHandler):
    """An OpenAI-compatible upstream whose tool call has no ``id`` (plain, or streamed in one delta)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if (body := self.chat_body()) is None:
            return
        call = {"index": 0, "type": "function", "function": {"name": "add", "arguments": "{}"}}
        base = {"id": "r1", "created": 0, "model": body["model"], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            return self.send_json(200, {**base, "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]})
        self.start_events()
        self.send_event({**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]})
        self.send_event("[DONE]")


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_call_without_an_id_is_the_same_502_on_the_router(stream: bool) -> None:
    """The openai backend builds a call an upstream sent without an id with ``"id": None``."""
    with LoopbackServer(_NoId) as upstream:
        card = ModelCard(id="upstream", backend="openai", model="m", base_url=upstream.url, input_price=1.0, output_price=1.0)
        with ServerThread(ModelPool([card]), preload=False, router="cheapest") as server:
            for model in ("upstream", "router"):
                with pytest.raises(openai.APIStatusError) as refused:
                    reply = sdk_client(server.url).chat.completions.create(**ask(model, "add"), stream=stream)
                    list(reply) if stream else None  # type: ignore[call-overload]
                error = json.loads(refused.value.response.text)["error"]
                assert (refused.value.status_code, error["code"]) == (502, "bad_upstream_reply"), (model, error)
                assert "upstream: 'tool_calls' 0: needs an \"id\"" in error["message"], (model, error)
