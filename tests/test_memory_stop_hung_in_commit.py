"""Closing a PostgreSQL memory whose connection hangs in its writer's ``COMMIT`` (a network that
drops packets just then) gives the writes up after :data:`~agentroute.memory.writer.STUCK_S`, as a
hang in any other statement does. Since 17ac781 the writer held the lock that keeps a commit and a
give-up apart while its commit waited, so ``close()`` — and a Ctrl-C of ``agentroute serve`` —
waited for ever on it."""

from __future__ import annotations

import math
import socket
import time

import pytest

import agentroute.memory.writer
from agentroute.memory import SQLMemory
from agentroute.types import Task
from tests.fixtures_hung_memory import assert_close_gives_up_held, proxied
from tests.test_serve_stop_during_outage import Cuttable

pytestmark = pytest.mark.postgres


class StallsAtCommit(Cuttable):
    """A :class:`Cuttable` that stalls on its own once armed and a ``COMMIT`` goes upstream."""

    armed = False

    def forward(self, data: bytes, sink: socket.socket, upstream: bool, state: dict[str, bool]) -> bool:
        if self.armed and upstream and b"COMMIT" in data:
            self.stalled = True
        return super().forward(data, sink, upstream, state)


def test_closing_a_memory_whose_commit_hangs_gives_its_writes_up(postgres_url: str, monkeypatch) -> None:
    monkeypatch.setattr(agentroute.memory.writer, "STUCK_S", 0.3)  # 30 s by default
    proxy, url = proxied(postgres_url, StallsAtCommit)
    memory = SQLMemory(url, retry_s=math.inf)
    try:
        memory.flush()
        proxy.armed = True
        memory.start_task(Task(id=f"held-{time.monotonic_ns()}", query="q"))  # its COMMIT waits for a reply
        for _ in range(200):  # bounded: 2 s
            if proxy.stalled:
                break
            time.sleep(0.01)
        assert proxy.stalled
        assert_close_gives_up_held(memory, 4)  # was: waited for ever
    finally:
        proxy.cut()  # the hung connection ends (and with it the writer still waiting)
