"""Provider fields from your own code: :class:`RequestOptions` through ``Dispatcher.step``, and the
typed :class:`CompletionRequest` fields a backend call sends (an ``openai`` card against a loopback
OpenAI-compatible upstream that keeps every request and returns log probabilities when asked)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("openai")

from agentroute import Dispatcher, ModelPool, make_router  # noqa: E402
from agentroute.dispatch import RequestOptions  # noqa: E402
from agentroute.types import CompletionRequest  # noqa: E402
from tests.test_serve_request_fields import ASK, JSON_ANSWER, Upstream, _card  # noqa: E402

JSON_MODE = {"type": "json_object"}


def test_a_completion_request_carries_response_format_and_logprobs_as_typed_fields() -> None:
    """Before: ``CompletionRequest`` had no such fields (a ``TypeError``; the server hid them in
    ``metadata["provider_fields"]``); now a backend call sends them and returns the log probabilities."""
    with Upstream() as upstream:
        card = _card("plain", upstream.url)
        pool = ModelPool([card])
        request = CompletionRequest("plain", ASK, 16, response_format=JSON_MODE, logprobs=True, top_logprobs=2)
        done = asyncio.run(pool.backend("plain").complete(request, card))
    sent = upstream.requests[-1]
    assert (sent["response_format"], sent["logprobs"], sent["top_logprobs"]) == (JSON_MODE, True, 2)
    assert [t["token"] for t in done.raw["logprobs"]] == JSON_ANSWER


def test_dispatcher_step_options_reach_every_attempt_and_sc_samples_get_their_own_seeds() -> None:
    with Upstream() as upstream:
        pool = ModelPool([_card("plain", upstream.url).model_copy(update={"strategies": ["sc@3"]})])
        dispatcher = Dispatcher(pool, make_router("cheapest"))
        run = dispatcher.start("Capital of France?", budget=None)
        options = RequestOptions(seed=2**63 - 2, response_format=JSON_MODE, logprobs=True)
        step = asyncio.run(dispatcher.step(run, role="executor", stage="executor", prompt="", input="Capital?", options=options))
    assert step is not None and step.status == "ok"
    assert [r["response_format"] for r in upstream.requests] == [JSON_MODE] * 3
    assert sorted(r["seed"] for r in upstream.requests) == [-(2**63), 2**63 - 2, 2**63 - 1]  # wrapped, all distinct
