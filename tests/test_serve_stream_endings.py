"""How real OpenAI-compatible servers end a stream, and what a dropped one looks like.

A stream ends properly with ``[DONE]``, a ``finish_reason`` or OpenAI's closing usage chunk (no
choices); a stream that has none of them was cut when its connection dropped: a retryable, billed
failure. A false "dropped" is a retry that doubles the user's bill, so each server's real ending
is replayed here (:data:`ENDINGS`, shapes as each server's own issue threads show them), on both
OpenAI-protocol backends and the router behind ``agentroute serve``: each is one provider call
and the whole answer. Then OpenAI's reasoning models, which refuse every ``temperature`` but
their default (a 400 in OpenAI's error shape): a card of one answers on routed steps too.

Real HTTP on 127.0.0.1: :class:`Scripted` (HTTP/1.0, the body ends when the connection closes)
plays the ending the test picks; :class:`~agentroute.serve.ServerThread` serves the cards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from agentroute.pool.card import ModelCard
from agentroute.pool.pool import ModelPool
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

pytest.importorskip("fastapi")
from agentroute.serve import ServerThread  # noqa: E402

PRICES = {"input_price": 1.0, "output_price": 2.0}
WORDS = [" alpha", " beta", " gamma"]
USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def _chunk(choices: list[Any], **more: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": choices, **more}


def _piece(text: str, finish: str | None = None, **more: Any) -> dict[str, Any]:
    return _chunk([{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}], **more)


def _so_far(count: int) -> dict[str, int]:
    return {"prompt_tokens": 4, "completion_tokens": count, "total_tokens": 4 + count}


#: Each server's stream end, as a list of events (``"[DONE]"`` verbatim): all end properly.
ENDINGS: dict[str, list[Any]] = {
    # OpenAI, vLLM, Ollama >= 0.5.2 with include_usage: finish_reason, the usage alone, [DONE]
    "openai": [*map(_piece, WORDS), _piece("", "stop"), _chunk([], usage=USAGE), "[DONE]"],
    # vLLM with continuous_usage_stats: the usage so far on every chunk, then as OpenAI
    "vllm-continuous-usage": [*(_piece(w, usage=_so_far(i + 1)) for i, w in enumerate(WORDS)),
                              _piece("", "stop", usage=USAGE), _chunk([], usage=USAGE), "[DONE]"],  # fmt: skip
    # llama.cpp server: timings on every chunk, the usage beside the finish_reason, [DONE]
    "llama.cpp": [*(_piece(w, timings={"predicted_n": i + 1}) for i, w in enumerate(WORDS)),
                  _piece("", "stop", usage=USAGE, timings={"predicted_n": 3}), "[DONE]"],  # fmt: skip
    # Ollama before 0.5.2, LM Studio without include_usage: no usage at all
    "no-usage": [*map(_piece, WORDS), _piece("", "stop"), "[DONE]"],
    # TGI before 2.1.1 (its #2221 added [DONE]): the last chunk's finish_reason ends the stream
    "tgi-without-done": [*map(_piece, WORDS[:-1]), _piece(WORDS[-1], "eos_token")],
    # no finish_reason at all: OpenAI's closing usage chunk says the server ended the stream
    "closing-usage-no-finish-reason": [*map(_piece, WORDS), _chunk([], usage=USAGE), "[DONE]"],
    # a server whose [DONE] has no blank line after it (the body just ends)
    "done-unterminated": [*map(_piece, WORDS), _piece("", "stop"), _chunk([], usage=USAGE), "[DONE]-"],
}

#: Streams whose connection dropped midway: no [DONE], no finish_reason, no closing usage chunk.
DROPS: dict[str, list[Any]] = {
    "text": [_piece(WORDS[0])],
    # a server that reports the usage so far on every chunk (vLLM's continuous_usage_stats)
    "usage-on-every-chunk": [_piece(WORDS[0], usage=_so_far(1)), _piece(WORDS[1], usage=_so_far(2))],
}

OPENAI_400 = {"type": "invalid_request_error", "param": "temperature"}


class _Handler(JSONHandler):
    server: Scripted
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes: a drop looks like an end

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        refusal = self.server.refuses(body)
        if refusal is not None:  # as OpenAI answers a reasoning model's temperature
            return self.send_json(400, {"error": refusal})
        events = self.server.next_events()
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(WORDS)}
            return self.send_json(200, {"id": "p", "object": "chat.completion", "created": 0, "model": "m", "usage": USAGE,
                                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})  # fmt: skip
        if self.server.chunked:  # HTTP/1.1 chunks, the connection closed before the last (empty) one
            return self._chunked(events)
        self.start_events()
        for event in events:
            if event == "[DONE]-":
                self.wfile.write(b"data: [DONE]")
                self.wfile.flush()
            else:
                self.send_event(event)

    def _chunked(self, events: list[Any]) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in events:
            data = f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.close_connection = True


class Scripted(LoopbackServer):
    """An OpenAI-compatible provider on 127.0.0.1 that streams :attr:`ending` (after the first
    :attr:`drops` calls, which stream :attr:`drop` and close), and keeps every request body."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.ending: list[Any] = ENDINGS["openai"]
        self.drop: list[Any] = DROPS["text"]
        self.drops = 0
        self.chunked = False  # answer in HTTP/1.1 chunks and reset the connection after the events
        self.refuses: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda body: None
        self._lock = threading.Lock()

    def next_events(self) -> list[Any]:
        with self._lock:
            if self.drops > 0:
                self.drops -= 1
                return self.drop
        return self.ending


def cards(url: str, model: str = "m") -> list[ModelCard]:
    return [
        ModelCard(id="echo", backend="openai", model=model, base_url=url, max_tokens=64, timeout_s=30, **PRICES),
        ModelCard(id="lite", backend="litellm", model=f"openai/{model}", base_url=url, max_tokens=64, timeout_s=30, **PRICES),
        ModelCard(id="vllm", backend="litellm", model=f"hosted_vllm/{model}", base_url=url, max_tokens=64, timeout_s=30, **PRICES),
    ]


@pytest.fixture(scope="module")
def provider() -> Iterator[Scripted]:
    with Scripted() as scripted:
        yield scripted


@pytest.fixture(scope="module")
def server(provider: Scripted) -> Iterator[ServerThread]:
    with ServerThread(ModelPool(cards(provider.url)), router="cheapest", budget={"usd": 1.0}) as served:
        yield served


def sdk(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)


def ask() -> list[Any]:
    return [{"role": "user", "content": "say three words"}]


def answer(server: ServerThread, model: str, stream: bool) -> tuple[str, Any]:
    create = sdk(server).chat.completions.create
    if not stream:
        reply = create(model=model, messages=ask())
        return reply.choices[0].message.content or "", reply.usage
    chunks = list(create(model=model, messages=ask(), stream=True, stream_options={"include_usage": True}))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[-1].usage


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize("model", ["echo", "lite", "vllm", "router"])
@pytest.mark.parametrize("stream", [False, True])
def test_each_real_servers_stream_end_is_one_call_and_the_whole_answer(
    provider: Scripted, server: ServerThread, ending: str, model: str, stream: bool
) -> None:
    provider.ending, provider.drops = ENDINGS[ending], 0
    before = len(provider.requests)
    text, usage = answer(server, model, stream)
    assert (text, len(provider.requests) - before) == ("".join(WORDS), 1), "a false 'dropped' retried or failed it"
    if ending not in ("no-usage", "tgi-without-done"):  # the provider's own usage is what the client is shown
        assert (usage.prompt_tokens, usage.completion_tokens) == (USAGE["prompt_tokens"], USAGE["completion_tokens"])


@pytest.mark.parametrize("drop", sorted(DROPS))
@pytest.mark.parametrize("model", ["echo", "lite", "vllm"])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_dropped_stream_is_a_503_on_both_backends(
    provider: Scripted, server: ServerThread, drop: str, model: str, chunked: bool
) -> None:
    """Before, on ``lite``: a stream with the usage so far on every chunk that then dropped was
    taken as complete (" alpha beta" as the whole answer, finish_reason "stop"): LiteLLM's backend
    took any usage for the end of the stream, the openai backend only the closing usage chunk.
    A chunked body cut short is a failed connection: retryable too."""
    provider.ending, provider.drop, provider.drops, provider.chunked = ENDINGS["openai"], DROPS[drop], 1, chunked
    try:
        with pytest.raises(openai.InternalServerError) as info:
            sdk(server).chat.completions.create(model=model, messages=ask())
    finally:
        provider.chunked = False
    assert info.value.status_code == 503 and ("dropped midway" in info.value.message or chunked)


def test_the_router_retries_a_dropped_stream_with_usage_on_every_chunk(provider: Scripted, server: ServerThread) -> None:
    """The dispatcher retries the drop (billed) and answers in full; before, on a litellm card the
    partial answer was the step's output."""
    provider.ending, provider.drop = ENDINGS["openai"], DROPS["usage-on-every-chunk"]
    for model in ("lite", "vllm", "echo"):
        with ServerThread(ModelPool([c for c in cards(provider.url) if c.id == model]), router="cheapest") as only:
            provider.drops = 1
            before = len(provider.requests)
            assert sdk(only).chat.completions.create(model="router", messages=ask()).choices[0].message.content == "".join(WORDS)
            assert len(provider.requests) - before == 2


# -- OpenAI's reasoning models take no temperature but their default -----------------------------------
def openai_refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's 400 for a reasoning model's temperature (o3-mini refuses the field, o4-mini any
    value but 1) and for its ``max_tokens`` (they take ``max_completion_tokens``)."""
    if "temperature" not in body:
        if "max_tokens" in body and body["model"] in ("o3-mini", "o4-mini"):
            return {**OPENAI_400, "param": "max_tokens", "code": "unsupported_parameter",
                    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                               "Use 'max_completion_tokens' instead."}  # fmt: skip
        return None
    if body["model"] == "o3-mini":
        return {**OPENAI_400, "code": "unsupported_parameter",
                "message": "Unsupported parameter: 'temperature' is not supported with this model."}  # fmt: skip
    if body["model"] == "o4-mini" and body["temperature"] != 1:
        return {**OPENAI_400, "code": "unsupported_value",
                "message": f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                           "Only the default (1) value is supported."}  # fmt: skip
    return None


@pytest.mark.parametrize("model", ["o4-mini", "o3-mini"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_reasoning_model_that_refuses_temperature_answers_routed_steps(provider: Scripted, model: str, stream: bool) -> None:
    """Routed steps are sampled at temperature 0: before, every call of such a card was a 400 (the
    router's task failed, the card's client got the 400). Now the refused temperature is left out
    (remembered for the card's model: one refused request, not billed, then none). The provider is
    no OpenAI host (a proxy, an Azure gateway): its refused ``max_tokens`` is sent again as
    ``max_completion_tokens``, the same cap."""
    provider.ending, provider.drops, provider.refuses = ENDINGS["openai"], 0, openai_refusal
    try:
        for card in cards(provider.url, model):
            with ServerThread(ModelPool([card]), router="cheapest", budget={"usd": 1.0}) as only:
                for name in ("router", card.id, "router"):
                    provider.requests.clear()
                    text, _ = answer(only, name, stream)
                    assert text == "".join(WORDS), (card.id, name)
                    sent = provider.requests[-1]
                    assert "temperature" not in sent, "the refused temperature was sent"
                    assert "max_tokens" not in sent and sent["max_completion_tokens"] > 0
            assert len(provider.requests) == 1, "the refusal was not remembered"
    finally:
        provider.refuses = lambda body: None


def test_a_model_that_takes_its_temperature_still_gets_it(provider: Scripted, server: ServerThread) -> None:
    provider.ending, provider.drops = ENDINGS["openai"], 0
    for model in ("echo", "lite", "vllm"):
        sdk(server).chat.completions.create(model=model, messages=ask(), temperature=0.3)
        assert provider.requests[-1]["temperature"] == 0.3


# -- a reply whose usage was lost, on OpenAI's endpoint -------------------------------------------------
@pytest.mark.parametrize("backend", ["openai", "litellm"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_reply_without_usage_on_openais_endpoint_is_charged_at_its_cap(
    provider: Scripted, monkeypatch: pytest.MonkeyPatch, backend: str, stream: bool
) -> None:
    """OpenAI's reasoning models bill reasoning tokens they never send: a stream that ended (a
    finish_reason) before its closing usage chunk came says nothing of them. Before, the completion
    was counted from the 3 words received; now it is charged at the cap the call was sent with (the
    card's 64; the router's step cap), on a card as on the router. The cards name OpenAI's host; an
    HTTP proxy on loopback (``HTTP_PROXY``, as a corporate gateway) answers for it here."""
    monkeypatch.setenv("HTTP_PROXY", provider.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # our own server and clients stay direct
    for name in ("http_proxy", "no_proxy"):  # the lower-case forms win where both are set
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    provider.ending, provider.drops = [*map(_piece, WORDS), _piece("", "stop")], 0
    model = "o4-mini" if backend == "openai" else "openai/o4-mini"
    card = ModelCard(id="o4", backend=backend, model=model, base_url="http://api.openai.com/v1", max_tokens=64, timeout_s=30, **PRICES)
    with ServerThread(ModelPool([card]), router="cheapest", budget={"usd": 1.0}) as only:
        for name in ("o4", "router"):
            text, usage = answer(only, name, stream)
            sent = provider.requests[-1]
            cap = sent.get("max_completion_tokens") or sent["max_tokens"]
            assert text == "".join(WORDS) and usage.completion_tokens == cap >= 32, name


# -- n choices: n provider calls, the usage their sum -----------------------------------------------------
@pytest.mark.parametrize("model", ["echo", "lite", "vllm"])
@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_are_n_provider_calls_and_their_usage_is_the_sum_the_provider_reported(
    provider: Scripted, server: ServerThread, model: str, stream: bool
) -> None:
    """OpenAI bills the prompt once for ``n`` choices of one request; agentroute makes ``n`` calls
    (choice ``i`` with ``seed + i``), each billed its prompt by the provider: the usage shown is the
    sum of what the provider reported for those calls, no more, no less."""
    provider.ending, provider.drops = ENDINGS["openai"], 0
    before = len(provider.requests)
    create = sdk(server).chat.completions.create
    if stream:
        chunks = list(create(model=model, messages=ask(), n=3, seed=5, stream=True, stream_options={"include_usage": True}))
        usage = chunks[-1].usage
    else:
        usage = create(model=model, messages=ask(), n=3, seed=5).usage
    sent = provider.requests[before:]
    assert sorted(body["seed"] for body in sent) == [5, 6, 7]
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3 * USAGE["prompt_tokens"], 3 * USAGE["completion_tokens"])


# -- the connection fails after the stream's end -----------------------------------------------------------
@pytest.mark.parametrize("ending", ["openai", "no-usage", "llama.cpp"])
@pytest.mark.parametrize("model", ["echo", "lite", "vllm", "router"])
def test_a_connection_that_fails_after_the_streams_end_keeps_the_answer(
    provider: Scripted, server: ServerThread, ending: str, model: str
) -> None:
    """A chunked body whose connection closes after ``[DONE]`` (or after the ``finish_reason``)
    without its last, empty chunk: the answer had ended. Before, on the openai backend, the
    transport error was a retryable, billed failure: a 503 for a card, a second provider call (a
    second bill) on the router."""
    provider.ending, provider.drops, provider.chunked = ENDINGS[ending], 0, True
    try:
        before = len(provider.requests)
        text, _ = answer(server, model, stream=False)
        assert (text, len(provider.requests) - before) == ("".join(WORDS), 1)
    finally:
        provider.chunked = False
