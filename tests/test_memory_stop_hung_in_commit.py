"""Closing a PostgreSQL memory whose connection hangs in its writer's ``COMMIT`` (a network that
drops packets just then) gives the writes up after :data:`~agentroute.memory.writer.STUCK_S`, as a
hang in any other statement does. Since 17ac781 the writer held the lock that keeps a commit and a
give-up apart while its commit waited, so ``close()`` — and a Ctrl-C of ``agentroute serve`` —
waited for ever on it."""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

import agentroute.memory.writer
from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryWriteError
from agentroute.types import Task
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
    proxy = StallsAtCommit(int(postgres_url.rsplit(":", 1)[1].split("/")[0]))
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
        memory.flush()
        proxy.armed = True
        memory.start_task(Task(id=f"held-{time.monotonic_ns()}", query="q"))  # its COMMIT waits for a reply
        for _ in range(200):  # bounded: 2 s
            if proxy.stalled:
                break
            time.sleep(0.01)
        assert proxy.stalled
        closing = threading.Thread(target=close, daemon=True)
        started = time.monotonic()
        closing.start()
        closing.join(4)
        took = time.monotonic() - started
    finally:
        proxy.cut()  # the hung connection ends (and with it the writer still waiting)
    assert closed, f"close() still waiting after {took:.1f}s"  # was: for ever
    assert isinstance(closed[0], MemoryWriteError) and "did not answer" in str(closed[0]), closed
    assert [t.id.split("-")[0] for t in closed[0].payloads] == ["held"] and took < 1.5, (closed[0].payloads, took)
