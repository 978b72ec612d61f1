"""The litellm backend gives a usage count sent as text (``"completion_tokens": "2"``) or as
``true`` the openai backend's verdict: a protocol error (the routed step fails charged its worst
case, audit ``protocol_error``), plain or streamed, ``openai/`` or ``hosted_vllm/``; ``2.0`` is 2.

Before: LiteLLM's ``Usage`` (and the OpenAI SDK's models under it) turned ``"2"`` into 2 and
``true`` into 1 before the backend saw them, and the step was booked as sound. Now the usage is
read as the server sent it, off the wire, for a self-hosted OpenAI-protocol endpoint.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest

from agentroute import Budget, Dispatcher
from agentroute.pool import ModelCard, ModelPool
from agentroute.routers import make_router
from tests.fixtures_reply_server import LoopbackServer
from tests.test_upstream_usage_text import _Counts

# not imported here: agentroute imports it with its local cost map (no network)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")


@pytest.fixture(scope="module")
def upstream() -> Any:
    from agentroute.pool.backends.litellm import litellm_module

    litellm_module()  # its import (seconds under load) is no part of the first step's 5 s deadline
    with LoopbackServer(_Counts) as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
@pytest.mark.parametrize("count", ["text", "true", "float"])
def test_a_litellm_step_refuses_text_or_boolean_counts(upstream: Any, provider: str, stream: bool, count: str) -> None:
    from agentroute.pool.backends.litellm import LiteLLMBackend

    card = ModelCard(id=count, backend="litellm", model=f"{provider}/{count}", base_url=upstream.url,
                     input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=5)
    pool = ModelPool([card], {"litellm": LiteLLMBackend(stream=stream)})
    dispatcher = Dispatcher(pool, make_router("cheapest"))

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        return run, await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q")

    run, step = asyncio.run(main())
    pool.close()
    if count == "float":
        assert step.status == "ok" and step.output == "Paris." and step.tokens_out == 2
        assert run.ledger.spent["usd"] == pytest.approx(card.usd(7, 2))
        return
    assert step.status == "failed" and "usage.completion_tokens is not a number" in (step.error or ""), step.error
    assert run.ledger.spent["usd"] >= card.usd(7, 8) and run.ledger.spent["calls"] == 1  # its worst case
    assert any(e.kind == "protocol_error" and e.subject == count for e in run.context["audit"])
