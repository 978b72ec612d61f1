"""Writes given up while their try waits for a SQLite lock another process holds are never also
stored: a try that gets the lock after :meth:`SQLMemory.give_up_writes` is rolled back, and the
writes are raised once, by kind, naming a few of their tasks. (A close during Ctrl-C gives them up
at once when the lock stays held: tests/test_memory_close_waits_for_a_lock.py.)"""

from __future__ import annotations

import math
import sqlite3
import threading
import time

import pytest

import agentroute.memory.engine
from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryWriteError
from agentroute.types import Task

BUSY_MS = 3000  # the file's busy timeout here (30 s by default): what a try waits for the lock


def _stored(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM tasks ORDER BY id")]


def test_a_try_that_gets_the_lock_after_its_writes_were_given_up_is_rolled_back(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(agentroute.memory.engine, "SQLITE_BUSY_TIMEOUT_MS", BUSY_MS)
    path = tmp_path / "m.db"
    memory = SQLMemory(f"sqlite:///{path}", retry_s=math.inf)
    memory.flush()
    lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    try:
        memory.start_task(Task(id="t0", query="q"))
        time.sleep(0.2)  # its try waits for the lock
        for i in range(1, 7):
            memory.start_task(Task(id=f"t{i}", query="q"))  # queued behind it
        assert memory.give_up_writes("not stored: given up") == 7
        threading.Timer(0.1, lock.rollback).start()  # the lock goes: the try goes on, to its commit
        writer = memory._writer._thread  # noqa: SLF001 - waiting for its try to end
        writer.join(BUSY_MS / 1000)
        assert not writer.is_alive()
        with pytest.raises(MemoryWriteError) as lost:
            memory.flush()
        said = str(lost.value)  # the tasks to look for: a few, on one line
        assert "7 memory write(s) failed and were not committed (7 start_task) of task(s) t0, t1, t2, t3, t4 +2 more; " in said
        assert lost.value.task_ids == [f"t{i}" for i in range(7)] and "\n" not in said
        assert _stored(path) == []  # rolled back: not stored and reported lost
        memory.close()  # nothing more to say
    finally:
        lock.close()

