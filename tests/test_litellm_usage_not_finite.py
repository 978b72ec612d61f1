"""A NaN usage count through the litellm backend fails the step with the openai backend's one-line
verdict (``usage.completion_tokens is not finite (got nan)``), plain and streamed.

Before: LiteLLM's ``Usage`` refused the NaN first, and the step's error was LiteLLM's text — on a
plain reply ``unreadable reply: Invalid response object Traceback (most recent call last): File …``,
a traceback in a user's error line.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest

from agentroute import Budget, Dispatcher
from agentroute.pool import ModelCard, ModelPool
from agentroute.routers import make_router
from tests.fixtures_reply_server import JSONHandler, LoopbackServer

# not imported here: agentroute imports it with its local cost map (no network)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")


class _NaN(JSONHandler):
    """Answers "Paris." with ``"completion_tokens": NaN`` (Python's JSON writes it so)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.chat_body()
        if body is None:
            return
        usage = {"prompt_tokens": 7, "completion_tokens": float("nan"), "total_tokens": 9}
        base = {"id": "r1", "created": 0, "model": str(body["model"])}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
            return self.send_json(200, {**base, "object": "chat.completion", "usage": usage, "choices": [choice]})
        self.start_events()
        chunk = {**base, "object": "chat.completion.chunk"}
        self.send_event({**chunk, "choices": [{"index": 0, "delta": {"content": "Paris."}, "finish_reason": "stop"}]})
        self.send_event({**chunk, "choices": [], "usage": usage})
        self.send_event("[DONE]")


@pytest.fixture(scope="module")
def upstream() -> Any:
    from agentroute.pool.backends.litellm import litellm_module

    litellm_module()  # its import (seconds under load) is no part of the first step's 5 s deadline
    with LoopbackServer(_NaN) as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
def test_a_nan_count_fails_the_step_in_one_clear_line(upstream: Any, provider: str, stream: bool) -> None:
    from agentroute.pool.backends.litellm import LiteLLMBackend

    card = ModelCard(id="m", backend="litellm", model=f"{provider}/m", base_url=upstream.url,
                     input_price=1.0, output_price=2.0, max_tokens=8, timeout_s=5)
    pool = ModelPool([card], {"litellm": LiteLLMBackend(stream=stream)})
    dispatcher = Dispatcher(pool, make_router("cheapest"))

    async def main() -> Any:
        run = dispatcher.start("q", budget=Budget(usd=100.0))
        return run, await dispatcher.step(run, role="executor", stage="execute", prompt="p", input="q")

    run, step = asyncio.run(main())
    pool.close()
    assert step.status == "failed" and "usage.completion_tokens is not finite (got nan)" in (step.error or ""), step.error
    assert "Traceback" not in (step.error or "")
    assert run.ledger.spent["usd"] >= card.usd(7, 8)  # its worst case
    assert any(e.kind == "protocol_error" for e in run.context["audit"])
