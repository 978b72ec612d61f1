"""A close behind a SQLite write lock that another process holds for less than
:data:`~agentroute.memory.engine.STOP_LOCKED_S` (a ``sqlite3`` shell's short transaction, another
worker's large commit) loses nothing: its writes wait for the lock and are stored, nothing is
raised. Only a lock held throughout ``STOP_LOCKED_S`` gives them up (17ac781 took one try of
0.25 s: a lock that went 0.3 s later lost the writes)."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import time

from agentroute.memory import SQLMemory
from agentroute.memory.engine import STOP_LOCKED_S
from agentroute.types import Task

HELD_S = 0.3
# another process: locks, says so, then holds the lock HELD_S from the line "go"
HOLD = (
    "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.readline()\n"
    f"time.sleep({HELD_S})\nc.execute('ROLLBACK')\n"
)


def test_a_lock_held_less_than_stop_locked_s_loses_no_write(tmp_path) -> None:
    assert HELD_S < STOP_LOCKED_S
    path = tmp_path / "m.db"
    memory = SQLMemory(f"sqlite:///{path}", retry_s=math.inf)
    memory.flush()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        memory.start_task(Task(id="t0", query="q"))  # its try waits for the lock
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        started = time.monotonic()
        memory.close(retry_s=10)  # raises nothing: stored
        took = time.monotonic() - started
    finally:
        holder.communicate(timeout=10)
    assert 0.15 < took < 3.0, took  # it did wait for the lock, and not the busy timeout
    with sqlite3.connect(path) as conn:
        assert [row[0] for row in conn.execute("SELECT id FROM tasks")] == ["t0"]
