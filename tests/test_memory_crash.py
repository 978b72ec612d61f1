"""A user's script (``app.run`` in a loop) killed with ``kill -9``: every step whose provider call
was answered before the kill is in the memory, SQLite and PostgreSQL (the non-batch path; the batch
runner's is tests/test_batch_kill.py).

The server holds each request ``DELAY_S``; a sequential run sends its next request only after it has
recorded the step of the previous reply, so the kill comes ``AFTER_S`` after that step was recorded:
the memory's writer batched writes for 50 ms before (it lost the step), it now commits a write that
finds it idle at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.test_batch_server import StubOpenAIServer, pool_yaml

DELAY_S = 0.4
AFTER_S = 0.02  # the kill, after the server received the next request

SCRIPT = """
import sys
from agentroute.graph import AgentGraph
from agentroute.memory import SQLMemory
from agentroute.pool.pool import ModelPool
from agentroute.routers.base import make_router

graph = AgentGraph("two").add_role("planner", prompt="Plan.").add_role("executor", prompt="Answer.")
graph.add_edge("planner", "executor")
app = graph.compile(pool=ModelPool.from_yaml(sys.argv[1]), router=make_router("cheapest"), memory=SQLMemory(sys.argv[2]))
i = 0
while True:
    app.run(f"question {i}?")
    i += 1
"""


class _Server(StubOpenAIServer):
    """The stub, with the time each request was received: its handler reads ``delay_s`` twice then
    (``if server.delay_s: time.sleep(server.delay_s)``); the requests of this test come one at a time."""

    def __init__(self, **kwargs):
        self.received: list[float] = []
        self._reads = 0
        self._received_lock = threading.Lock()
        super().__init__(**kwargs)

    @property
    def delay_s(self) -> float:
        with self._received_lock:
            self._reads += 1
            if self._reads % 2:
                self.received.append(time.time())
        return self._delay_s

    @delay_s.setter
    def delay_s(self, value: float) -> None:
        self._delay_s = value


def _kill_while_waiting_for_a_reply(tmp_path: Path, memory: str, kills_after: int) -> None:
    with _Server(delay_s=DELAY_S) as server:
        (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
        (tmp_path / "script.py").write_text(SCRIPT)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "script.py"), str(tmp_path / "pool.yaml"), memory],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while len(server.received) < kills_after:
                if proc.poll() is not None:
                    pytest.fail(f"the script ended ({proc.returncode}):\n{proc.stdout.read() if proc.stdout else ''}")
                assert time.monotonic() < deadline, "the script sent too few requests"
                time.sleep(0.001)
            time.sleep(max(0.0, server.received[kills_after - 1] + AFTER_S - time.time()))
            killed_at = time.time()
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
        answered_before = [a for a in server.answered if a["t"] < killed_at]
        assert len(answered_before) == kills_after - 1  # the last request was still held: not answered
    engine = sa.create_engine(memory)
    try:
        with engine.connect() as conn:
            steps = conn.execute(sa.text("SELECT count(*), sum(cost_usd) FROM steps")).one()
            running = conn.execute(sa.text("SELECT count(*) FROM tasks WHERE status = 'running'")).scalar()
    finally:
        engine.dispose()
    assert steps[0] == len(answered_before), "every call answered before the kill has its step in the memory"
    assert running == 1  # the task the kill cut short (see docs/batches.md: how it is shown)


@pytest.mark.parametrize("kills_after", [4, 5])  # in a task's second step, and in a new task's first
def test_kill_9_loses_no_step_of_an_answered_call_sqlite(tmp_path, kills_after):
    _kill_while_waiting_for_a_reply(tmp_path, f"sqlite:///{tmp_path}/memory.db", kills_after)


@pytest.mark.postgres
def test_kill_9_loses_no_step_of_an_answered_call_postgres(tmp_path, postgres_url):
    from agentroute.memory.pgserver import create_database

    _kill_while_waiting_for_a_reply(tmp_path, create_database(postgres_url, "agentroute_memory_crash"), 4)


def _rows(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    finally:
        engine.dispose()


def test_a_lone_write_is_committed_at_once_not_at_the_batch_deadline(tmp_path):
    from agentroute.memory import SQLMemory
    from tests.test_memory import make_step, make_task

    url = f"sqlite:///{tmp_path}/memory.db"
    with SQLMemory(url, flush_interval_s=30) as memory:
        task = make_task(0)
        memory.start_task(task)
        memory.record_step(make_step(task, 0))
        deadline = time.monotonic() + 5  # well before the 30 s deadline, seen by another connection
        while _rows(url, "steps") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _rows(url, "steps") == 1 and _rows(url, "tasks") == 1


def test_under_load_writes_are_still_batched(tmp_path):
    from agentroute.memory import SQLMemory
    from tests.test_memory import make_step, make_task

    with SQLMemory(f"sqlite:///{tmp_path}/memory.db", flush_interval_s=0.05) as memory:
        task = make_task(0)
        memory.start_task(task)
        for k in range(3000):  # far above a provider's pace: one commit per write would cost more than the writes
            memory.record_step(make_step(task, k))
            if k % 100 == 0:
                time.sleep(0.001)  # let the writer run between writes
        memory.flush()
        assert memory._writer.committed == 3001
        assert memory._writer.batches < 300
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db", prompt_commit=False, flush_interval_s=30) as memory:
        memory.start_task(make_task(1))
        time.sleep(0.3)
        assert memory._writer.batches == 0  # prompt_commit=False: the batch waits for its deadline
