"""A hostile OpenAI-compatible upstream, field by field (issue 10: what a reply carries is data from
outside). Through a routed step (plain and streamed) and through ``agentroute serve`` proxying it,
a malformed field never answers as if it were sound, never makes serve's reply a 500 or invalid
JSON: the step fails charged its worst case, or serve answers 502 naming the upstream's fault.

Before: a choice without a message object (``null``, text, a choice that is text) was an empty
answer charged as a sound one; a tool call naming no function, or whose ``arguments`` were an
object, was kept with empty text (a client ran the tool without its arguments); token log
probabilities of NaN made serve's reply a 500 (``stream: false``) or sent ``NaN`` (not JSON) in its
stream; and every upstream protocol fault was served as HTTP 400 ``invalid_request_error``, blaming
the client's request. An upstream that ignores ``stream: true`` and sends its whole reply as JSON
lost its paid answer (the step failed charged its worst case; serve, which streams from upstream,
answered every request to it 502): it is read as the plain reply it is. Such a reply, or one of an
upstream that refuses to stream, was streamed by serve as an empty answer: now as one delta. A server
that answers two choices where one was asked made the answer its first listed one (``index`` 1),
or, streamed, both interleaved ("ParisLyon.."): now the choice of ``index`` 0. A ``content`` sent as a
list of text parts failed the step charged its worst case (serve: the paid answer lost): it is
read as its text.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from agentroute import Budget, Dispatcher
from agentroute.dispatch.options import RequestOptions
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.routers import make_router
from agentroute.serve import ServerThread
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
NAN_LOGPROBS = {"content": [{"token": "Paris.", "logprob": float("nan"), "bytes": None, "top_logprobs": []}]}
#: What each model's reply puts in its first choice (``choice``) or message (``message``) instead.
FAULTS: dict[str, dict[str, Any]] = {
    "message-null": {"choice": {"message": None}},
    "message-text": {"choice": {"message": "Paris."}},
    "choice-text": {"choices": ["Paris."]},
    "tool-no-function": {"message": {"tool_calls": [{"id": "c1", "type": "function"}]}},
    "tool-args-object": {"message": {"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}},
    "no-choices": {"choices": []},
    "content-number": {"message": {"content": 42}},
    "content-parts": {"message": {"content": [{"type": "text", "text": "Paris"}, {"type": "text", "text": "."}]}},  # answers
}
#: The reply is sound but for its token log probabilities: the answer stands, the log probabilities are absent.
LOGPROBS: dict[str, Any] = {"logprobs-nan": NAN_LOGPROBS, "logprobs-token-number": {"content": [{"token": 1, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}}

#: A server that ignores ``stream: true`` and sends its whole reply as one JSON body.
IGNORES_STREAM = "ignores-stream"
#: A server that refuses ``stream: true`` (HTTP 400): asked again without it.
REFUSES_STREAM = "refuses-stream"


class _Hostile(JSONHandler):
    """Plain replies as :data:`FAULTS` and :data:`LOGPROBS` say; streamed ones carry the same message
    as one delta, then ``finish_reason``, the usage chunk and ``[DONE]``."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        model = str(body["model"])
        fault = FAULTS.get(model, {})
        message = {"role": "assistant", "content": "Paris.", **fault.get("message", {})}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": LOGPROBS.get(model), **fault.get("choice", {})}
        choices = fault.get("choices", [choice])
        base = {"id": "r1", "created": 0, "model": model}
        if model == TWO_CHOICES:
            return self._two_choices(body, base)
        if body.get("stream") and model == REFUSES_STREAM:
            return self.send_json(400, {"error": {"message": "stream is not supported", "type": "invalid_request_error"}})
        if not body.get("stream") or model == IGNORES_STREAM:
            return self.send_json(200, {**base, "object": "chat.completion", "usage": USAGE, "choices": choices})
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}
        if choices and isinstance(choices[0], dict):
            delta = choices[0]["message"] if isinstance(choices[0]["message"], dict) else {"content": choices[0]["message"]}
            choices = [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": choices[0]["logprobs"]}]
        if choices:
            self.send_event({**chunk, "choices": choices})
            self.send_event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.send_event({**chunk, "choices": [], "usage": USAGE})
        self.send_event("[DONE]")

    def _two_choices(self, body: dict[str, Any], base: dict[str, Any]) -> None:
        """Two choices where one was asked: the second listed first (plain), or their deltas interleaved."""
        if not body.get("stream"):
            choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"} for i, text in ((1, "Lyon."), (0, "Paris."))]
            return self.send_json(200, {**base, "object": "chat.completion", "usage": USAGE, "choices": choices})
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}
        for index, text in ((0, "Paris"), (1, "Lyon"), (0, "."), (1, ".")):
            self.send_event({**chunk, "choices": [{"index": index, "delta": {"content": text}, "finish_reason": None}]})
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.send_event({**chunk, "choices": [], "usage": USAGE})
        self.send_event("[DONE]")


#: A server that answers two choices where one was asked (or interleaves two in its stream).
TWO_CHOICES = "two-choices"
WHOLE = (IGNORES_STREAM, REFUSES_STREAM, TWO_CHOICES, "content-parts")
MODELS = [*FAULTS, *LOGPROBS, *WHOLE[:-1]]


def _card(model: str, url: str) -> ModelCard:
    return ModelCard(id=model, backend="openai", model=model, base_url=url, input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=5)


@pytest.fixture(scope="module")
def upstream() -> Any:
    with LoopbackServer(_Hostile) as running:
        yield running


@pytest.fixture(scope="module")
def served(upstream: Any) -> Any:
    with ServerThread(ModelPool([_card(m, upstream.url) for m in MODELS])) as server:
        yield server


#: What a streamed reply cannot carry: a message that is no object has no delta to stand for it.
_PLAIN_ONLY = {"message-null", "message-text"}


#: Faults a routed step already met soundly (failed charged, or the answer kept): served only.
_SERVED_ONLY = {"no-choices", "content-number", *LOGPROBS}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", [m for m in MODELS if m not in _SERVED_ONLY])
def test_a_routed_step_fails_charged_or_answers_soundly(upstream: Any, model: str, stream: bool) -> None:
    if stream and model in _PLAIN_ONLY:
        pytest.skip("a plain reply's shape")
    card = _card(model, upstream.url)
    dispatcher = Dispatcher(ModelPool([card], {"openai": OpenAIBackend(stream=stream)}), make_router("cheapest"))

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        step = await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q", options=RequestOptions(logprobs=True))
        return run, step

    run, step = asyncio.run(main())
    if model in WHOLE:  # the answer stands
        assert step.status == "ok" and step.output == "Paris."  # never another choice's text
        assert run.ledger.spent["usd"] == pytest.approx(card.usd(7, 2))
    else:
        assert step.status == "failed" and step.output in ("", None) and model in (step.error or "")
        assert run.ledger.spent["usd"] >= card.usd(7, 2) and run.ledger.spent["calls"] == 1  # its worst case


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", [m for m in MODELS if m not in _PLAIN_ONLY])
def test_serve_answers_502_naming_the_upstream_fault_or_valid_json(served: Any, model: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=served.url, api_key="none", max_retries=0)
    ask: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Capital?"}], "logprobs": True}
    if model in LOGPROBS or model in WHOLE:
        if stream:
            with httpx.stream("POST", f"{served.url}/chat/completions", json={**ask, "stream": True}, timeout=10) as reply:
                events = [line[6:] for line in reply.iter_lines() if line.startswith("data: ")]
            assert reply.status_code == 200 and events[-1] == "[DONE]"
            chunks = [json.loads(e, parse_constant=lambda name: pytest.fail(f"not JSON: {name}")) for e in events[:-1]]
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")) == "Paris."
            assert all(c["choices"][0].get("logprobs") is None for c in chunks if c.get("choices"))
        else:
            reply = httpx.post(f"{served.url}/chat/completions", json=ask, timeout=10)
            assert reply.status_code == 200, reply.text
            body = json.loads(reply.text, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
            assert body["choices"][0]["message"]["content"] == "Paris." and body["choices"][0]["logprobs"] is None
        return
    with pytest.raises(openai.APIError) as failed:
        if stream:
            list(client.chat.completions.create(**ask, stream=True))
        else:
            client.chat.completions.create(**ask)
    error = failed.value
    assert isinstance(error.body, dict) and error.body.get("code") == "bad_upstream_reply" and model in str(error.body.get("message"))
    assert "Traceback" not in str(error.body)
    if isinstance(error, openai.APIStatusError):  # else: an error event, once the stream had begun
        assert error.status_code == 502 and error.response.headers.get("x-should-retry") == "false"
    else:
        assert stream and model == "tool-no-function"  # its fault shows at the stream's end
