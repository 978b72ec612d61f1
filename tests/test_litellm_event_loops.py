"""The litellm backend's connections to a self-hosted endpoint close with the event loop that
opened them, as the openai backend's do: a user who calls ``asyncio.run(...)`` once per question
keeps no connection open per run.

Before: LiteLLM cached one client per event loop (its key names the loop) and never closed those
of a loop that had ended: after 2 runs against a keep-alive server, 2 sockets stayed open, also
after ``pool.close()`` and a garbage collection. A self-hosted ``openai/`` or ``hosted_vllm/``
endpoint is now called through the backend's own per-loop client; the clients LiteLLM cached for
a loop (other providers', ``openrouter/…``) are closed with it. Against a real HTTP/1.1 server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from agentroute.pool import ModelCard, ModelPool
from agentroute.types import CompletionRequest
from tests.fixtures_leaks import connections_to
from tests.fixtures_reply_server import LoopbackServer, _Handler

# not imported here: agentroute imports it with its local cost map (no network)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")


class _KeepAlive(_Handler):
    protocol_version = "HTTP/1.1"  # connections stay open between requests, as real servers keep them


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(_KeepAlive) as running:
        yield running


@pytest.mark.parametrize("model", ["openai/echo", "hosted_vllm/echo", "openrouter/echo"])
def test_one_asyncio_run_per_question_leaves_no_connection_open(server: LoopbackServer, model: str) -> None:
    from agentroute.pool.backends.litellm import LiteLLMBackend

    card = ModelCard(id="m", backend="litellm", model=model, base_url=server.url, input_price=1.0, output_price=2.0,
                     max_tokens=8, timeout_s=5)
    backend = LiteLLMBackend(stream=False)
    pool = ModelPool([card], {"litellm": backend})
    request = CompletionRequest(model="m", messages=[{"role": "user", "content": "Capital?"}], max_tokens=8)
    port = server.server_address[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(2):
            assert asyncio.run(backend.complete(request, card)).text == "echo"
            assert connections_to(port) == 0  # closed as its loop shut down
        pool.close()
        gc.collect()
    assert connections_to(port) == 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_pool_aclose_closes_the_running_loops_connections(server: LoopbackServer) -> None:
    """Within one loop (a notebook), ``await pool.aclose()`` closes them, and the pool stays usable."""
    from agentroute.pool.backends.litellm import LiteLLMBackend

    card = ModelCard(id="m", backend="litellm", model="openai/echo", base_url=server.url, input_price=1.0,
                     output_price=2.0, max_tokens=8, timeout_s=5)
    backend = LiteLLMBackend(stream=False)
    pool = ModelPool([card], {"litellm": backend})
    request = CompletionRequest(model="m", messages=[{"role": "user", "content": "Capital?"}], max_tokens=8)
    port = server.server_address[1]

    async def main() -> list[int]:
        seen = []
        for _ in range(2):
            await backend.complete(request, card)
            seen.append(connections_to(port))
            await pool.aclose()
            seen.append(connections_to(port))
        return seen

    seen = asyncio.run(main())
    assert seen[0] == 1 and seen[1] == seen[3] == 0, seen


def test_a_loops_shutdown_leaves_the_clients_of_a_loop_whose_token_reads_alike(server: LoopbackServer) -> None:
    """Two live loops whose LiteLLM loop tokens end in the same digits (``t`` and ``1t``: cache keys
    ``…-3`` and ``…-13``): the first loop's shutdown closes its own cached client only; the second
    loop's keeps its connection and answers on. A guard: keys are told apart by their whole last
    segment (it passed before this test was written: ``endswith("-3")`` never matches ``…-13``)."""
    evicted = pytest.importorskip("litellm.caching.evicted_client_closer")
    from agentroute.pool.backends.litellm import LiteLLMBackend, litellm_module

    async def token() -> int | None:
        return evicted.running_loop_token()

    card = ModelCard(id="m", backend="litellm", model="openrouter/echo", base_url=server.url, input_price=1.0,
                     output_price=2.0, max_tokens=8, timeout_s=5)  # fmt: skip
    backend = LiteLLMBackend(stream=False)
    request = CompletionRequest(model="m", messages=[{"role": "user", "content": "Capital?"}], max_tokens=8)
    port = server.server_address[1]
    first = asyncio.Runner()
    mine = first.run(token())
    while True:  # other loops take tokens until the next one is "1" + mine
        with asyncio.Runner() as other:
            taken = other.run(token())
        if taken is None or taken + 1 >= int(f"1{mine}"):
            break
    second = asyncio.new_event_loop()
    thread = threading.Thread(target=second.run_forever, daemon=True)
    thread.start()

    def on_second(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, second).result(30)

    try:
        theirs = on_second(token())
        if not str(theirs).endswith(str(mine)) or theirs == mine:
            pytest.skip(f"another thread took the token meant for the second loop (tokens {mine}, {theirs})")
        assert on_second(backend.complete(request, card)).text == "echo"
        assert first.run(backend.complete(request, card)).text == "echo"
        assert connections_to(port) == 2  # one per loop, kept alive
        kept = getattr(getattr(litellm_module(), "in_memory_llm_clients_cache", None), "cache_dict", {})
        clients = {k: v for k, v in kept.items() if isinstance(k, str) and k.endswith(f"-{theirs}")}
        assert clients, list(kept)  # the second loop's client, as LiteLLM keys it
        first.close()  # its loop shuts down: its cached client closes
        assert connections_to(port) == 1
        assert all(kept.get(k) is v for k, v in clients.items()), list(kept)  # still cached: not closed
        assert on_second(backend.complete(request, card)).text == "echo"
        assert connections_to(port) == 1  # the second loop's own connection, still open
    finally:
        first.close()
        on_second(_shut_down())  # as asyncio.run ends its loop
        second.call_soon_threadsafe(second.stop)
        thread.join(10)
        second.close()
    assert connections_to(port) == 0


async def _shut_down() -> None:
    """What ``asyncio.run`` does before it closes its loop: cancel the tasks left (LiteLLM's logging
    worker), then close the asynchronous generators (each loop's clients close there)."""
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
