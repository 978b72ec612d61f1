"""A usage count the upstream sends as text (``"completion_tokens": "7"``), or as ``true``, gets one
verdict whichever way the reply comes (issue 10: usage is data from outside, validated like any
input): refused as a protocol error — a routed step fails charged its worst case, ``agentroute serve``
answers 502 ``bad_upstream_reply`` — while ``7.0`` (a JSON number with no fraction: an integer to
OpenAI's JSON schema) is read as 7 on every path.

Before: a plain reply's counts went through the OpenAI SDK's models, which turn ``"7"``, ``" 7 "``
and ``true`` into numbers, so the plain reply was booked as sound where the same count, streamed,
failed the step (the rule of ``usage.py`` saw the raw JSON only there). So did a whole JSON reply
from an upstream that ignores ``stream: true``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from agentroute import Budget, Dispatcher
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.openai import OpenAIBackend
from agentroute.routers import make_router
from agentroute.serve import ServerThread
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

#: What each model's usage carries as its ``completion_tokens`` (the word before ``-``).
COUNTS: dict[str, Any] = {"text": "2", "true": True, "float": 2.0}


class _Counts(JSONHandler):
    """Answers "Paris." with ``completion_tokens`` as :data:`COUNTS` says; a model ending in
    ``-refuses`` refuses to stream (HTTP 400: called plainly), one ending in ``-ignores`` sends its
    whole reply as JSON when asked to stream."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        model = str(body["model"])
        usage = {"prompt_tokens": 7, "completion_tokens": COUNTS[model.split("-")[0]], "total_tokens": 9}
        base = {"id": "r1", "created": 0, "model": model}
        if body.get("stream") and model.endswith("-refuses"):
            return self.send_json(400, {"error": {"message": "stream is not supported", "type": "invalid_request_error"}})
        if not body.get("stream") or model.endswith("-ignores"):
            choice = {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
            return self.send_json(200, {**base, "object": "chat.completion", "usage": usage, "choices": [choice]})
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {"content": "Paris."}, "finish_reason": None}]})
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self.send_event({**chunk, "choices": [], "usage": usage})
        self.send_event("[DONE]")


def _card(model: str, url: str) -> ModelCard:
    return ModelCard(id=model, backend="openai", model=model, base_url=url, input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=5)


@pytest.fixture(scope="module")
def upstream() -> Any:
    with LoopbackServer(_Counts) as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["text", "true", "float"])
def test_a_routed_step_gives_one_verdict_plain_or_streamed(upstream: Any, model: str, stream: bool) -> None:
    card = _card(model, upstream.url)
    dispatcher = Dispatcher(ModelPool([card], {"openai": OpenAIBackend(stream=stream)}), make_router("cheapest"))

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        return run, await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q")

    run, step = asyncio.run(main())
    if model == "float":
        assert step.status == "ok" and step.output == "Paris." and step.tokens_out == 2
        assert run.ledger.spent["usd"] == pytest.approx(card.usd(7, 2))
        return
    assert step.status == "failed" and "usage.completion_tokens is not a number" in (step.error or "")
    assert run.ledger.spent["usd"] >= card.usd(7, 8) and run.ledger.spent["calls"] == 1  # its worst case
    assert any(e.kind == "protocol_error" and e.subject == model for e in run.context["audit"])


def test_serve_gives_one_verdict_whichever_way_the_upstream_answers(upstream: Any) -> None:
    """Serve streams from its upstream; one that refuses to stream is called plainly, one that
    ignores ``stream: true`` is read as the plain reply it sends."""
    models = [f"{count}{how}" for count in ("text", "float") for how in ("", "-refuses", "-ignores")]
    with ServerThread(ModelPool([_card(m, upstream.url) for m in models])) as served:
        client = openai.OpenAI(base_url=served.url, api_key="none", max_retries=0)
        for model in models:
            ask: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Capital?"}]}
            if model.startswith("float"):
                reply = client.chat.completions.create(**ask)
                assert reply.choices[0].message.content == "Paris." and reply.usage is not None
                assert reply.usage.completion_tokens == 2, model
                continue
            with pytest.raises(openai.APIStatusError) as failed:
                client.chat.completions.create(**ask)
            error = failed.value
            assert error.status_code == 502, model
            assert isinstance(error.body, dict) and error.body.get("code") == "bad_upstream_reply"
            assert "usage.completion_tokens is not a number" in str(error.body.get("message")), model
