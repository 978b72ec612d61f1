"""``await pool.aclose()`` inside a running loop leaves alone the clients LiteLLM cached for that
loop, which the user's own ``litellm.acompletion`` calls share: a call of theirs in flight meanwhile
completes. They are closed when the loop shuts down (tests/test_litellm_event_loops.py).

Before: ``pool.aclose()`` closed them under the user's call, which then hung (until LiteLLM's own
timeout, 600 s by default). Against a real HTTP/1.1 server on 127.0.0.1 that answers after 0.3 s.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Iterator

import pytest

from agentroute.pool import ModelCard, ModelPool
from agentroute.types import CompletionRequest
from tests.fixtures_reply_server import LoopbackServer, _Handler

# not imported here: agentroute imports it with its local cost map (no network)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")

_ASKED = threading.Event()  # the slow request reached the server


class _SlowKeepAlive(_Handler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if "slow" in (self.headers.get("X-Test") or ""):
            _ASKED.set()
            time.sleep(0.3)
        super().do_POST()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    from agentroute.pool.backends.litellm import litellm_module

    litellm_module()
    with LoopbackServer(_SlowKeepAlive) as running:
        yield running


@pytest.mark.parametrize("model", ["openai/echo", "openrouter/echo"])
def test_a_users_litellm_call_in_flight_survives_pool_aclose(server: LoopbackServer, model: str) -> None:
    from agentroute.pool.backends.litellm import LiteLLMBackend, litellm_module

    litellm = litellm_module()
    card = ModelCard(id="m", backend="litellm", model=model, base_url=server.url, input_price=1.0, output_price=2.0,
                     max_tokens=8, timeout_s=5)
    backend = LiteLLMBackend(stream=False)
    pool = ModelPool([card], {"litellm": backend})
    request = CompletionRequest(model="m", messages=[{"role": "user", "content": "Capital?"}], max_tokens=8)
    _ASKED.clear()

    async def main() -> str:
        await backend.complete(request, card)
        theirs = asyncio.ensure_future(litellm.acompletion(
            model="openrouter/echo", api_base=server.url, api_key="k", timeout=5,
            messages=[{"role": "user", "content": "q"}], extra_headers={"X-Test": "slow"},
        ))
        for _ in range(200):  # bounded: until the server holds their request
            if _ASKED.is_set():
                break
            await asyncio.sleep(0.01)
        await pool.aclose()
        reply = await asyncio.wait_for(theirs, 2)
        return str(reply.choices[0].message.content)

    assert asyncio.run(main()) == "echo"


def test_async_with_pool_in_asyncio_run_leaves_no_connection_open(server: LoopbackServer) -> None:
    """``asyncio.run(main())`` whose ``main`` ends with ``await pool.aclose()`` (``async with pool``):
    LiteLLM's clients of that loop still close when the loop shuts down."""
    from agentroute.pool.backends.litellm import LiteLLMBackend
    from tests.fixtures_leaks import connections_to

    card = ModelCard(id="m", backend="litellm", model="openrouter/echo", base_url=server.url, input_price=1.0,
                     output_price=2.0, max_tokens=8, timeout_s=5)
    backend = LiteLLMBackend(stream=False)
    pool = ModelPool([card], {"litellm": backend})
    request = CompletionRequest(model="m", messages=[{"role": "user", "content": "Capital?"}], max_tokens=8)
    port = server.server_address[1]
    before = connections_to(port)

    async def main() -> None:
        async with pool:
            await backend.complete(request, card)

    asyncio.run(main())
    assert connections_to(port) == before
