"""``agentroute serve`` passes on the ``finish_reason`` its upstream gave when it is one of OpenAI's
(``stop``, ``length``, ``tool_calls``, ``content_filter``, ``function_call``), and the tool calls a
``tool_calls`` announces, plain and streamed, as the ``openai`` client reads them; an unknown reason,
or a ``tool_calls`` with no tool call to run, is ``stop``.

Before: an upstream's ``tool_calls`` was served as ``stop`` and its tool calls dropped (an empty
answer), so a client looping on ``finish_reason == "tool_calls"`` (the OpenAI cookbook's agent loop)
stopped, taking the empty text for the answer.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from agentroute.pool import ModelCard, ModelPool
from agentroute.serve import ServerThread
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}
#: Each model's reply: (content, tool calls, the upstream's finish_reason, what serve says).
REPLIES: dict[str, tuple[str | None, list[dict[str, Any]] | None, str, str]] = {
    "called": (None, [CALL], "tool_calls", "tool_calls"),
    "said": ("Let me look.", [CALL], "tool_calls", "tool_calls"),  # text, then the call
    "length": ("Paris is", None, "length", "length"),
    "claimed": ("Paris.", None, "tool_calls", "stop"),  # announces calls it does not make
    "eos": ("Paris.", None, "eos", "stop"),  # not OpenAI's
}


class _Ends(JSONHandler):
    """Replies as :data:`REPLIES` says (streamed: the text, the tool call in two pieces, the end);
    a model ending in ``-plain`` refuses to stream (HTTP 400), so it is called plainly."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        model = str(body["model"])
        content, calls, reason, _ = REPLIES[model.removesuffix("-plain")]
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        base = {"id": "r1", "created": 0, "model": model}
        if body.get("stream") and model.endswith("-plain"):
            return self.send_json(400, {"error": {"message": "stream is not supported", "type": "invalid_request_error"}})
        if not body.get("stream"):
            message = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
            return self.send_json(200, {**base, "object": "chat.completion", "usage": usage,
                                        "choices": [{"index": 0, "message": message, "finish_reason": reason}]})
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}

        def send(delta: dict[str, Any], finish: str | None = None) -> None:
            self.send_event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        send({"role": "assistant", "content": content})
        for call in calls or []:
            arguments = call["function"]["arguments"]
            send({"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": {"name": "lookup", "arguments": arguments[:5]}}]})
            send({"tool_calls": [{"index": 0, "function": {"arguments": arguments[5:]}}]})
        send({}, reason)
        self.send_event({**chunk, "choices": [], "usage": usage})
        self.send_event("[DONE]")


MODELS = [f"{m}{how}" for m in REPLIES for how in ("", "-plain")]


def _card(model: str, url: str) -> ModelCard:
    return ModelCard(id=model, backend="openai", model=model, base_url=url, input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=5)


@pytest.fixture(scope="module")
def upstream() -> Any:
    with LoopbackServer(_Ends) as running:
        yield running


@pytest.fixture(scope="module")
def client(upstream: Any) -> Any:
    with ServerThread(ModelPool([_card(m, upstream.url) for m in MODELS])) as served:
        yield openai.OpenAI(base_url=served.url, api_key="none", max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_serve_passes_openais_finish_reasons_and_the_tool_calls_they_announce(client: Any, model: str) -> None:
    _check(client, model, model)


@pytest.mark.parametrize("model", ["called", "said", "claimed", "length-plain"])
def test_the_routed_model_ends_as_the_model_that_answered(upstream: Any, model: str) -> None:
    """The model ``"router"`` gives the answering card's finish reason and tool calls, plain and
    streamed (``said``: its text streams as it comes, the call after it). Before: ``stop``, with
    the calls in the plain message but none streamed."""
    with ServerThread(ModelPool([_card(model, upstream.url)]), router="cheapest") as served:
        _check(openai.OpenAI(base_url=served.url, api_key="none", max_retries=0), "router", model)


def _check(client: Any, asked: str, model: str) -> None:
    """``client``'s plain and streamed answers to ``asked`` end as :data:`REPLIES` says ``model``'s do."""
    content, calls, _, served = REPLIES[model.removesuffix("-plain")]
    ask: dict[str, Any] = {"model": asked, "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    plain = client.chat.completions.create(**ask).choices[0]
    with client.chat.completions.stream(**ask) as events:
        try:
            streamed = events.get_final_completion().choices[0]
        except openai.LengthFinishReasonError as cut:  # the SDK's helper raises on "length", the reply in hand
            streamed = cut.completion.choices[0]
    for choice in (plain, streamed):
        assert choice.finish_reason == served, model
        assert (choice.message.content or "") == (content or "")
        got = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        assert got == [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls or []]
