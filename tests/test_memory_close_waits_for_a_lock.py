"""A memory's ordinary close (the end of ``agentroute run``, a batch worker's, a script's ``with``
block) waits for another process's SQLite write lock and stores its writes, however long the lock
is held within the busy timeout: a long transaction of another worker on the file loses nothing.
Only a close during a Ctrl-C (a ``KeyboardInterrupt`` on its way out: ``agentroute serve``'s stop)
gives them up, named, and only once the lock stays held :data:`~agentroute.memory.engine.STOP_LOCKED_S`
(a shorter lock loses nothing then either).

Since 17ac781 every close gave them up: a worker's last outcomes were lost behind another's
1 s transaction (``MemoryWriteError``), where 28a916f waited and stored them."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import time

from agentroute.memory import SQLMemory
from agentroute.memory.engine import STOP_LOCKED_S
from agentroute.memory.errors import MemoryWriteError
from agentroute.types import Task

LONG_S, SHORT_S = 1.0, 0.3  # held longer, and shorter, than STOP_LOCKED_S (0.5 s)
# another process: locks, says so, then holds the lock argv[2] seconds from the line "go"
HOLD = (
    "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.readline()\n"
    "time.sleep(float(sys.argv[2]))\nc.execute('ROLLBACK')\n"
)


def _close_behind_the_lock(path, held_s: float, *, interrupted: bool) -> tuple[float, BaseException | None]:
    memory = SQLMemory(f"sqlite:///{path}", retry_s=math.inf)
    memory.flush()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(held_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    raised: BaseException | None = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        memory.start_task(Task(id="t0", query="q"))  # its try waits for the lock
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        started = time.monotonic()
        try:
            try:
                if interrupted:
                    raise KeyboardInterrupt  # Ctrl-C
            finally:
                memory.close(retry_s=10)
        except KeyboardInterrupt:
            pass
        except MemoryWriteError as exc:
            raised = exc
        took = time.monotonic() - started
    finally:
        holder.communicate(timeout=10)
    return took, raised


def _stored(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM tasks")]


def test_an_ordinary_close_waits_for_a_long_lock_and_stores(tmp_path) -> None:
    assert SHORT_S < STOP_LOCKED_S < LONG_S
    took, raised = _close_behind_the_lock(tmp_path / "m.db", LONG_S, interrupted=False)
    assert raised is None, raised  # was: given up after 0.5 s, MemoryWriteError
    assert LONG_S - 0.1 < took < 5.0, took
    assert _stored(tmp_path / "m.db") == ["t0"]


def test_a_close_during_ctrl_c_waits_for_a_short_lock_and_stores(tmp_path) -> None:
    took, raised = _close_behind_the_lock(tmp_path / "m.db", SHORT_S, interrupted=True)
    assert raised is None, raised  # 17ac781's single 0.25 s try gave them up
    assert SHORT_S / 2 < took < 3.0, took  # it did wait for the lock
    assert _stored(tmp_path / "m.db") == ["t0"]


def test_a_close_during_ctrl_c_gives_the_writes_up_at_once(tmp_path) -> None:
    took, raised = _close_behind_the_lock(tmp_path / "m.db", LONG_S, interrupted=True)
    assert isinstance(raised, MemoryWriteError) and "closed while another process held the write lock" in str(raised)
    assert took < LONG_S, took  # STOP_LOCKED_S, not the lock's end
    assert _stored(tmp_path / "m.db") == []
