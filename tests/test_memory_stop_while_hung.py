"""Closing a PostgreSQL memory whose connection hangs (a network dropping packets, a server process
stopped): ``close()`` gives up, after its retries and :data:`~agentroute.memory.writer.STUCK_S`, the
writes its writer holds and raises them, instead of waiting forever for a reply that never comes
(``agentroute serve`` then never exited on Ctrl-C)."""

from __future__ import annotations

import math
import threading
import time

import pytest

import agentroute.memory.writer
from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryWriteError
from agentroute.types import Task
from tests.test_serve_stop_during_outage import Cuttable

pytestmark = pytest.mark.postgres


def test_closing_a_memory_whose_connection_hangs_gives_its_writes_up(postgres_url: str, monkeypatch) -> None:
    monkeypatch.setattr(agentroute.memory.writer, "STUCK_S", 0.5, raising=False)  # 30 s by default
    proxy = Cuttable(int(postgres_url.rsplit(":", 1)[1].split("/")[0]))
    url = postgres_url.replace(postgres_url.rsplit("@", 1)[1].split("/")[0], f"127.0.0.1:{proxy.port}")
    memory = SQLMemory(url, retry_s=math.inf)
    closed: list[BaseException | None] = []

    def close() -> None:
        try:
            memory.close(retry_s=0.1)
            closed.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked below
            closed.append(exc)

    try:
        memory.start_task(Task(id=f"hung-{time.monotonic_ns()}", query="q"))
        memory.flush()
        proxy.stalled = True
        memory.start_task(Task(id=f"held-{time.monotonic_ns()}", query="q"))  # its try waits for a reply
        time.sleep(0.1)
        closing = threading.Thread(target=close, daemon=True)
        started = time.monotonic()
        closing.start()
        closing.join(5)
        took = time.monotonic() - started
    finally:
        proxy.cut()  # the hung connection ends (and with it an old writer still waiting)
    assert closed, f"close() still waiting after {took:.1f}s"
    assert isinstance(closed[0], MemoryWriteError) and "did not answer" in str(closed[0]), closed
    assert [t.id.split("-")[0] for t in closed[0].payloads] == ["held"] and took < 1.5, (closed[0].payloads, took)
