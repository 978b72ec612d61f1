"""A user's script (``app.run`` in a loop) killed with ``kill -9``: every step whose provider call
was answered before the kill is in the memory, SQLite and PostgreSQL (the non-batch path; the batch
runner's is tests/test_batch_kill.py); ``agentroute memory reconcile``, from a fresh process, then
closes the task it left ``running`` as ``interrupted`` and nothing else (a live process's task, another
host's, one stored before processes were recorded).

The server holds each request ``DELAY_S``; a sequential run sends its next request only after it has
recorded the step of the previous reply, so the kill comes ``AFTER_S`` after that step was recorded:
the memory's writer batched writes for 50 ms before (it lost the step), it now commits a write that
finds it idle at once.
"""

from __future__ import annotations

import json
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


def _counts(url: str) -> tuple[int, int]:
    """Steps, and running tasks, in the memory at ``url`` (0, 0 before it exists)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("tasks"):
                return 0, 0
            steps = conn.execute(sa.text("SELECT count(*) FROM steps")).scalar()
            running = conn.execute(sa.text("SELECT count(*) FROM tasks WHERE status = 'running'")).scalar()
    finally:
        engine.dispose()
    return int(steps), int(running)


def _kill_while_waiting_for_a_reply(tmp_path: Path, memory: str, kills_after: int) -> int:
    """Run SCRIPT, kill it with ``kill -9`` while it waits for reply ``kills_after``; returns its pid."""
    before = _counts(memory)  # what other processes stored (another test's live process)
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
    steps, running = _counts(memory)
    assert steps - before[0] == len(answered_before), "every call answered before the kill has its step in the memory"
    assert running - before[1] == 1  # the task the kill cut short (see docs/batches.md: how it is shown)
    return proc.pid


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


LIVE = """
import sys
from agentroute.memory import SQLMemory
from agentroute.types import Agent, Step, Task

memory = SQLMemory(sys.argv[1])
task = Task(id="live-task", query="still running?", graph="qa")
memory.start_task(task)
memory.record_step(Step(task_id=task.id, index=0, stage="answer", agent=Agent(model="m"), output="o", cost_usd=0.25))
memory.flush()
print("ready", flush=True)
sys.stdin.read()  # alive until the test closes stdin
"""


def _tasks(url: str) -> dict[str, dict]:
    """Every task row (status, cost, meta) with its steps' count and cost, by id."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            steps = {r.task_id: (r.n, r.cost) for r in conn.execute(
                sa.text("SELECT task_id, count(*) AS n, sum(cost_usd) AS cost FROM steps GROUP BY task_id"))}
            rows = conn.execute(sa.text("SELECT id, status, cost_usd, meta, finished_at FROM tasks")).mappings().all()
    finally:
        engine.dispose()
    out = {}
    for r in rows:
        meta = r["meta"] if isinstance(r["meta"], dict) else json.loads(r["meta"])
        out[r["id"]] = {**r, "meta": meta, "steps": steps.get(r["id"], (0, 0.0))}
    return out


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "agentroute", "memory", *args], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def _kill_then_reconcile(tmp_path: Path, url: str) -> None:
    from agentroute.memory import SQLMemory

    (tmp_path / "live.py").write_text(LIVE)
    live = subprocess.Popen([sys.executable, str(tmp_path / "live.py"), url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    memory = None
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "ready", live.stdout.read()
        memory = SQLMemory(url)  # the checks the CLI's first run leaves run in this process: fewer process starts
        killed_pid = _kill_while_waiting_for_a_reply(tmp_path, url, 4)  # in its second task's second step
        engine = sa.create_engine(url)
        try:  # two more running tasks reconcile must leave alone: another host's, and an old row
            with engine.begin() as conn:
                for task_id, meta in (("other-host", {"agentroute_process": {"host": "elsewhere/0", "pid": 1, "start": 1}}),
                                      ("old-row", {})):  # fmt: skip
                    conn.execute(sa.text("INSERT INTO tasks (id, query, graph, status, cost_usd, meta, created_at) "
                                         "VALUES (:id, 'q', 'qa', 'running', 0, :meta, CURRENT_TIMESTAMP)"),
                                 {"id": task_id, "meta": json.dumps(meta)})  # fmt: skip
        finally:
            engine.dispose()
        before = _tasks(url)
        killed = [t for t, row in before.items() if row["meta"].get("agentroute_process", {}).get("pid") == killed_pid
                  and row["status"] == "running"]  # fmt: skip
        assert len(killed) == 1 and before[killed[0]]["steps"][0] == 1  # its first step stored, the second in flight

        stats = _cli("stats", "--memory", url)
        assert stats.returncode == 0, stats.stderr
        assert "running (process gone)" in stats.stdout and "agentroute memory reconcile" in stats.stdout
        # what `stats --json` shows (its CLI form: test_memory_lease), read here without a process start
        assert memory.stats()["running"] == {"alive": 1, "gone": 1, "other_host": 1, "unknown": 1}

        done = _cli("reconcile", "--memory", url)
        assert done.returncode == 0, done.stderr
        assert "closed 1 task(s)" in done.stdout, done.stdout
        after = _tasks(url)
        task = after[killed[0]]
        assert task["status"] == "interrupted" and task["finished_at"] is not None
        assert task["cost_usd"] == pytest.approx(task["steps"][1]) and task["cost_usd"] > 0
        assert f"its process ({killed_pid} on" in task["meta"]["error"]
        for other in ("live-task", "other-host", "old-row"):
            assert after[other]["status"] == "running" and after[other]["meta"] == before[other]["meta"]
        assert {t: r for t, r in after.items() if t != killed[0]} == {t: r for t, r in before.items() if t != killed[0]}
        assert memory.reconcile_running() == []  # nothing left to close; the live process's task stays
        if live.stdin:
            live.stdin.close()
        live.wait(30)
        # its process ended (normally, without finishing the task): now it is gone too
        assert memory.reconcile_running() == ["live-task"]
    finally:
        if memory is not None:
            memory.close()
        if live.poll() is None:
            live.kill()
            live.wait(30)
    assert _tasks(url)["live-task"]["status"] == "interrupted" and _tasks(url)["live-task"]["cost_usd"] == 0.25


def test_reconcile_closes_only_the_killed_process_task_sqlite(tmp_path):
    _kill_then_reconcile(tmp_path, f"sqlite:///{tmp_path}/memory.db")


@pytest.mark.postgres
def test_reconcile_closes_only_the_killed_process_task_postgres(tmp_path, postgres_url):
    from agentroute.memory.pgserver import create_database

    _kill_then_reconcile(tmp_path, create_database(postgres_url, "agentroute_memory_reconcile"))


def test_a_reused_pid_is_not_the_process_that_ran_the_task(tmp_path):
    """A task whose recorded pid now runs another process (a different start time) is gone; the
    same pid with its own start time is alive."""
    from agentroute.memory import SQLMemory
    from agentroute.memory.processes import this_process
    from tests.test_memory import make_task

    url = f"sqlite:///{tmp_path}/memory.db"
    with SQLMemory(url) as memory:
        for i in range(2):
            memory.start_task(make_task(i, id=f"t{i}"))
        memory.flush()
        me = this_process()
        assert me["start"] is not None  # Linux: /proc gives it
        with memory.engine.begin() as conn:
            reused = {**me, "start": me["start"] - 1}
            conn.execute(sa.text("UPDATE tasks SET meta = :meta WHERE id = 't1'"),
                         {"meta": json.dumps({"agentroute_process": reused})})  # fmt: skip
        assert memory.running_tasks().alive == ["t0"] and memory.running_tasks().gone == ["t1"]
        assert memory.reconcile_running() == ["t1"]
        assert memory.get_task("t0").task.status == "running"
        assert memory.get_task("t1").task.status == "interrupted"
        assert "agentroute_process" not in memory.get_task("t0").task.metadata  # bookkeeping, not the caller's



def test_a_task_from_before_this_machines_last_reboot_is_gone(tmp_path):
    """Same host name, another boot id: every process of that boot has ended (before: counted as
    another host's, so ``reconcile`` never closed it)."""
    from agentroute.memory import SQLMemory
    from agentroute.memory.processes import host_key, this_process
    from tests.test_memory import make_task

    here = host_key()
    if "/" not in here:
        pytest.skip("no boot id on this system")
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        for i in range(2):
            memory.start_task(make_task(i, id=f"t{i}"))
        memory.flush()
        name = here.partition("/")[0]
        with memory.engine.begin() as conn:
            for task_id, host in (("t0", f"{name}/0ldb00t"), ("t1", f"not-{name}/0ldb00t")):
                conn.execute(sa.text("UPDATE tasks SET meta = :meta WHERE id = :id"),
                             {"id": task_id, "meta": json.dumps({"agentroute_process": {**this_process(), "host": host}})})  # fmt: skip
        running = memory.running_tasks()
        assert (running.gone, running.other_host) == (["t0"], ["t1"])
        assert memory.reconcile_running() == ["t0"]
        assert memory.get_task("t1").task.status == "running"


BUSY = """
import sys
from agentroute.memory import SQLMemory
from agentroute.types import Agent, Step, Task

memory = SQLMemory(sys.argv[1])
print("ready", flush=True)
for i in range(int(sys.argv[2])):
    task = Task(id=f"busy-{i}", query="q", graph="qa")
    memory.start_task(task)
    memory.record_step(Step(task_id=task.id, index=0, stage="answer", agent=Agent(model="m"), output="o", cost_usd=0.01))
    if i % 2:
        task.status = "done"
        memory.finish_task(task)
memory.flush()
print("written", flush=True)
sys.stdin.read()
"""


def test_reconcile_beside_a_live_process_that_writes_leaves_its_tasks_alone(tmp_path):
    """Reconciling again and again while a live process starts, steps and finishes tasks (SQLite:
    both write the file): no error, none of its tasks closed, its unfinished ones still running."""
    from agentroute.memory import SQLMemory

    url = f"sqlite:///{tmp_path}/memory.db"
    (tmp_path / "busy.py").write_text(BUSY)
    SQLMemory(url).close()  # the schema, before both open it
    busy = subprocess.Popen([sys.executable, str(tmp_path / "busy.py"), url, "400"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "ready"
        with SQLMemory(url) as memory:
            closed = []
            for _ in range(40):
                closed += memory.reconcile_running()
                time.sleep(0.005)
            assert busy.stdout.readline().strip() == "written", busy.stdout.read()
            closed += memory.reconcile_running()
            assert closed == []
            rows = _tasks(url)
            unfinished = {f"busy-{i}" for i in range(0, 400, 2)}
            assert {t for t, r in rows.items() if r["status"] == "running"} == unfinished
            assert set(memory.running_tasks().alive) == unfinished
    finally:
        if busy.stdin:
            busy.stdin.close()
        busy.wait(30)
