"""``pool.close()`` closes the connections of a loop the user ran by hand and left open.

Older scripts (and libraries) run ``loop.run_until_complete(app.arun(q))`` on a loop of their own
and close it at exit without ``loop.shutdown_asyncgens()``. ``pool.close()`` skipped such an idle
loop: its kept-alive connection stayed open, then warned ``unclosed transport`` once the loop was
closed. Against a real keep-alive HTTP/1.1 server on 127.0.0.1, through a real compiled graph."""

from __future__ import annotations

import asyncio

from tests.fixtures_leaks import connections_to
from tests.fixtures_reply_server import LoopbackServer
from tests.test_pool_event_loops import _app, _KeepAlive, _resource_warnings


def test_pool_close_closes_an_idle_hand_run_loops_connections() -> None:
    _resource_warnings()  # earlier garbage is not this test's
    with LoopbackServer(_KeepAlive) as server:
        app, pool = _app(server.url)
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(app.arun("one?")).answer == "echo"
            assert connections_to(server.server_address[1]) == 1
            pool.close()
            assert connections_to(server.server_address[1]) == 0  # was 1
            assert loop.run_until_complete(app.arun("two?")).answer == "echo"  # the pool stays usable
            loop.run_until_complete(pool.aclose())
        finally:
            loop.close()
    assert _resource_warnings() == []
