"""A PostgreSQL memory whose connection hangs: :func:`proxied` puts a :class:`Cuttable` proxy
between the memory and the test server (``proxy.stalled = True`` hangs it, ``proxy.cut()`` ends it);
:func:`assert_close_gives_up_held` checks that ``close()`` then gives up the write it holds."""

from __future__ import annotations

import threading
import time
from typing import TypeVar

from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryWriteError
from tests.test_serve_stop_during_outage import Cuttable

P = TypeVar("P", bound=Cuttable)


def proxied(postgres_url: str, kind: type[P]) -> tuple[P, str]:
    """A ``kind`` proxy to the server of ``postgres_url``, and the URL that goes through it."""
    address = postgres_url.rsplit("@", 1)[1].split("/")[0]
    proxy = kind(int(address.rsplit(":", 1)[1]))
    return proxy, postgres_url.replace(address, f"127.0.0.1:{proxy.port}")


def assert_close_gives_up_held(memory: SQLMemory, wait_s: float) -> None:
    """``memory.close(retry_s=0.1)``, waited for ``wait_s`` at most, raises within 1.5 s a
    :class:`MemoryWriteError` ("did not answer") that holds the task ``held-…`` alone."""
    closed: list[BaseException | None] = []

    def close() -> None:
        try:
            memory.close(retry_s=0.1)
            closed.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked below
            closed.append(exc)

    closing = threading.Thread(target=close, daemon=True)
    started = time.monotonic()
    closing.start()
    closing.join(wait_s)
    took = time.monotonic() - started
    assert closed, f"close() still waiting after {took:.1f}s"  # was: for ever
    assert isinstance(closed[0], MemoryWriteError) and "did not answer" in str(closed[0]), closed
    assert [t.id.split("-")[0] for t in closed[0].payloads] == ["held"] and took < 1.5, (closed[0].payloads, took)
