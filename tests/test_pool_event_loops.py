"""A pool's connections are closed whichever event loops opened them.

Users call ``asyncio.run(app.arun(q))`` once per question (a new event loop each time), or
``app.run(q)`` (agentroute's background loop). The openai backend kept one client per endpoint and
replaced it, unclosed, when a call came from a new loop; ``pool.aclose()`` skipped clients of other
loops: two runs and a close left an ``unclosed transport`` (and its socket) per run. Now each loop's
clients are closed when that loop shuts down (``asyncio.run``), and ``pool.close()`` /
``with pool:`` close those of agentroute's background loop too. Against a real keep-alive
HTTP/1.1 server on 127.0.0.1, through a real compiled graph.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator

import pytest

from agentroute import AgentGraph, make_router
from agentroute.pool import ModelCard, ModelPool
from agentroute.pool.backends.openai import OpenAIBackend
from tests.fixtures_leaks import connections_to
from tests.fixtures_reply_server import LoopbackServer, _Handler


class _KeepAlive(_Handler):
    protocol_version = "HTTP/1.1"  # connections stay open between requests, as real servers keep them


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(_KeepAlive) as running:
        yield running


def _app(url: str):  # noqa: ANN202 - a compiled graph
    card = ModelCard(id="m", backend="openai", model="echo", base_url=url, input_price=1.0, output_price=2.0)
    pool = ModelPool([card], {"openai": OpenAIBackend(stream=False)})
    return AgentGraph("one").add_role("executor", prompt="Answer.").compile(pool=pool, router=make_router("cheapest")), pool


def _resource_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_one_asyncio_run_per_question_leaves_no_connection_open(server: LoopbackServer) -> None:
    _resource_warnings()  # earlier garbage is not this test's
    app, pool = _app(server.url)
    for question in ("one?", "two?", "three?"):
        assert asyncio.run(app.arun(question)).answer == "echo"
    # each run's loop closed its clients as it shut down: nothing is open, before any close
    assert connections_to(server.server_address[1]) == 0
    pool.close()
    assert _resource_warnings() == []


def test_app_run_then_pool_close_closes_the_background_loops_connections(server: LoopbackServer) -> None:
    app, pool = _app(server.url)
    with pool:
        for question in ("one?", "two?"):
            assert app.run(question).answer == "echo"
        assert connections_to(server.server_address[1]) == 1  # one kept-alive connection, reused
    assert connections_to(server.server_address[1]) == 0


def test_pool_close_inside_a_running_loop_says_to_await_aclose(server: LoopbackServer) -> None:
    _, pool = _app(server.url)

    async def inside() -> None:
        with pytest.raises(RuntimeError, match=r"await pool\.aclose\(\)"):
            pool.close()
        await pool.aclose()

    asyncio.run(inside())
