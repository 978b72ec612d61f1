"""Closing a PostgreSQL memory whose connection hangs (a network dropping packets, a server process
stopped): ``close()`` gives up, after its retries and :data:`~agentroute.memory.writer.STUCK_S`, the
writes its writer holds and raises them, instead of waiting forever for a reply that never comes
(``agentroute serve`` then never exited on Ctrl-C)."""

from __future__ import annotations

import math
import time

import pytest

import agentroute.memory.writer
from agentroute.memory import SQLMemory
from agentroute.types import Task
from tests.fixtures_hung_memory import assert_close_gives_up_held, proxied
from tests.test_serve_stop_during_outage import Cuttable

pytestmark = pytest.mark.postgres


def test_closing_a_memory_whose_connection_hangs_gives_its_writes_up(postgres_url: str, monkeypatch) -> None:
    monkeypatch.setattr(agentroute.memory.writer, "STUCK_S", 0.5, raising=False)  # 30 s by default
    proxy, url = proxied(postgres_url, Cuttable)
    memory = SQLMemory(url, retry_s=math.inf)
    try:
        memory.start_task(Task(id=f"hung-{time.monotonic_ns()}", query="q"))
        memory.flush()
        proxy.stalled = True
        memory.start_task(Task(id=f"held-{time.monotonic_ns()}", query="q"))  # its try waits for a reply
        time.sleep(0.1)
        assert_close_gives_up_held(memory, 5)
    finally:
        proxy.cut()  # the hung connection ends (and with it an old writer still waiting)
