"""Closing a SQLite memory whose file another process holds locked (``agentroute serve`` stopped
with Ctrl-C while a ``memory`` command or a second writer holds the lock): the writer gives up the
writes it cannot store within its stop's retries, each batch queued behind the lock not waiting out
the busy timeout again (was: a busy timeout per batch, 87 s for three at the default 30 s)."""

from __future__ import annotations

import math
import sqlite3
import time

import pytest

import agentroute.memory.engine
import agentroute.memory.writer
from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryWriteError
from agentroute.types import Task

BUSY_MS = 1000  # the file's busy timeout here (30 s by default)


def test_closing_a_memory_behind_a_locked_file_ends_within_its_stop_retries(tmp_path, monkeypatch):
    monkeypatch.setattr(agentroute.memory.engine, "SQLITE_BUSY_TIMEOUT_MS", BUSY_MS)
    monkeypatch.setattr(agentroute.memory.writer, "RETRY_S", 0.3)  # how long a stopping writer still retries
    path = tmp_path / "m.db"
    memory = SQLMemory(f"sqlite:///{path}", retry_s=math.inf, batch_size=1)  # as 'agentroute serve' opens it
    memory.flush()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for k in range(6):  # one batch each: the first is retried, five wait behind it
            memory.start_task(Task(id=f"t{k}", query="q"))
        for _ in range(200):
            if memory.refusing_writes:
                break
            time.sleep(0.02)
        assert memory.refusing_writes
        started = time.monotonic()
        with pytest.raises(MemoryWriteError) as lost:
            memory.close()
        took = time.monotonic() - started
    finally:
        lock.rollback()
        lock.close()
    assert len(lost.value.failures) == 6, lost.value
    # its current try (≤ 1 busy timeout), then 0.1 s a batch; was a busy timeout a batch (6 s more)
    assert took < 2.5 * BUSY_MS / 1000, took
