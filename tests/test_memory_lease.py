"""Tasks left running by a process of *another host* that died: its lease (an advisory lock held by
its session) is released with it, and ``reconcile`` closes its tasks; a live host's are left alone.

Two real processes stand for two other hosts (their ``socket.gethostname`` is set before agentroute
is imported, so the host key they write is not this machine's); one is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres

OTHER_HOST = """
import socket, sys
socket.gethostname = lambda: sys.argv[2]  # another machine, as far as the memory can tell
from agentroute.memory import SQLMemory
from agentroute.types import Agent, Step, Task

memory = SQLMemory(sys.argv[1])
task = Task(id=sys.argv[3], query="q", graph="qa")
memory.start_task(task)
memory.record_step(Step(task_id=task.id, index=0, stage="answer", agent=Agent(model="m"), output="o", cost_usd=0.25))
memory.flush()
print("ready", flush=True)
sys.stdin.read()  # alive until the test closes stdin
"""


def _start(script: Path, url: str, host: str, task_id: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(script), url, host, task_id], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "ready", line + proc.stdout.read()
    return proc


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "agentroute", "memory", *args], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def _task(url: str, task_id: str) -> dict:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT status, cost_usd, meta FROM tasks WHERE id = :id"), {"id": task_id})
            status, cost, meta = row.one()
    finally:
        engine.dispose()
    return {"status": status, "cost_usd": cost, "meta": meta if isinstance(meta, dict) else json.loads(meta)}


def _wait_for(check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_reconcile_closes_the_tasks_of_a_killed_process_on_another_host(tmp_path, postgres_url, monkeypatch):
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.3")  # every process here: a reconcile's grace is 0.9 s
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_memory_lease")
    script = tmp_path / "other_host.py"
    script.write_text(OTHER_HOST)
    killed = _start(script, url, "host-a", "task-a")
    live = _start(script, url, "host-b", "task-b")
    try:
        memory = SQLMemory(url)
        try:
            running = memory.running_tasks()
            assert (running.alive, running.gone, running.other_host) == (["task-a", "task-b"], [], [])
            assert memory.reconcile_running() == []  # both hold their lease: nothing to close

            killed.send_signal(signal.SIGKILL)
            killed.wait(30)
            _wait_for(lambda: memory.running_tasks().gone == ["task-a"])  # the server ends its session
            assert memory.running_tasks().alive == ["task-b"]
        finally:
            memory.close()

        done = _cli("reconcile", "--memory", url)
        assert done.returncode == 0, done.stderr
        assert "closed 1 task(s)" in done.stdout, done.stdout
        task = _task(url, "task-a")
        assert task["status"] == "interrupted" and task["cost_usd"] == pytest.approx(0.25)
        assert "on host-a" in task["meta"]["error"] and "released its lease" in task["meta"]["error"]
        assert _task(url, "task-b")["status"] == "running"
        assert json.loads(_cli("stats", "--memory", url, "--json").stdout)["running"]["alive"] == 1
    finally:
        for proc in (killed, live):
            if proc.poll() is None and proc.stdin:
                proc.stdin.close()
            proc.wait(30)
    # the live one ended without finishing its task (its session closed with it): now it is gone too
    assert "closed 1 task(s)" in _cli("reconcile", "--memory", url).stdout
    assert _task(url, "task-b")["status"] == "interrupted"


def _lease_sessions(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )).scalars())  # fmt: skip


def test_a_lease_lost_with_its_connection_is_taken_again(tmp_path, postgres_url, monkeypatch):
    """The server ends the session holding the lease (a restart, an admin): the process reopens it
    within a check or so, so its task is alive again, not closed by the next reconcile."""
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.3")
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_memory_lease_lost")
    script = tmp_path / "other_host.py"
    script.write_text(OTHER_HOST)
    live = _start(script, url, "host-c", "task-c")
    try:
        memory = SQLMemory(url)
        try:
            assert memory.running_tasks().alive == ["task-c"]
            before = _lease_sessions(memory.engine)
            assert len(before) == 1  # the one session of the other process that holds a lease
            with memory.engine.begin() as conn:
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before[0]}).scalar_one()
            _wait_for(lambda: (s := _lease_sessions(memory.engine)) != [] and s != before, 10)
            assert live.poll() is None and memory.running_tasks().alive == ["task-c"]
            assert memory.reconcile_running() == []
        finally:
            memory.close()
    finally:
        if live.stdin:
            live.stdin.close()
        live.wait(30)


def test_a_lease_dropped_under_a_live_process_does_not_get_its_task_closed(tmp_path, postgres_url, monkeypatch):
    """The server drops the live process's lease session and a reconcile runs at once, before the
    process notices: the task is not closed (before: closed ``interrupted`` while it still ran, its
    later steps written to an interrupted task). The reconcile looks again after the grace period,
    by when the process holds its lease again; a process that is really gone is still closed. The
    live process is stopped (SIGSTOP) until the reconcile has had its first look, so that look
    always finds both leases released."""
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "1")  # grace: 3 s
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_memory_lease_window")
    script = tmp_path / "other_host.py"
    script.write_text(OTHER_HOST)
    live = _start(script, url, "host-d", "task-d")
    dead = _start(script, url, "host-e", "task-e")
    reconcile = None
    try:
        memory = SQLMemory(url)
        try:
            for proc in (live, dead):  # neither takes its lease again before the look below
                proc.send_signal(signal.SIGSTOP)
            with memory.engine.begin() as conn:
                sessions = conn.execute(sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = '' AND pid <> pg_backend_pid() "
                    "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock')"
                )).scalars().all()  # fmt: skip
                assert len(sessions) == 2
                for pid in sessions:  # both lease sessions end, waited for (a signalled backend holds its
                    # locks until it exits); only one process comes back
                    assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar_one()
            dead.send_signal(signal.SIGKILL)
            dead.wait(30)
            assert memory.running_tasks().gone == ["task-d", "task-e"]  # both look gone now
        finally:
            memory.close()
        started = time.monotonic()
        reconcile = subprocess.Popen([sys.executable, "-m", "agentroute", "memory", "reconcile", "--memory", url],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})  # fmt: skip
        assert reconcile.stderr is not None
        first_look = reconcile.stderr.readline()
        assert "looking again in 3 s" in first_look, first_look
        live.send_signal(signal.SIGCONT)  # it takes its lease back at its next check, within the grace
        out, err = reconcile.communicate(timeout=60)
        assert reconcile.returncode == 0, err
        assert "closed 1 task(s)" in out, out + err
        assert time.monotonic() - started >= 3
        assert "1 task(s) of other hosts left running: their lease was taken again" in out
        assert _task(url, "task-d")["status"] == "running"
        assert _task(url, "task-e")["status"] == "interrupted"
    finally:
        for proc in (live, dead):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        for proc in (live, dead, reconcile):
            if proc is not None and proc.poll() is None and proc.stdin:
                proc.stdin.close()
            if proc is not None:
                proc.wait(30)


FORKS = """
import json, os, sys
import sqlalchemy as sa
from agentroute.memory import SQLMemory
from agentroute.types import Agent, Step, Task

def locks():  # (mode, session) of each advisory lock held in this database
    engine = sa.create_engine(sys.argv[1], poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        return sorted(map(list, conn.execute(sa.text(
            "SELECT mode, pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))))

memory = SQLMemory(sys.argv[1])
task = Task(id="parent-task", query="q", graph="qa")
memory.start_task(task)
assert memory.claim_task(task.id)
memory.flush()
before = locks()
for how in ("close", "exit"):
    pid = os.fork()
    if pid == 0:  # a forked worker: closes its copy of the memory, or leaves it to the exit
        if how == "close":
            memory.close()
        sys.exit(0)
    assert os.waitpid(pid, 0)[1] == 0
memory.record_step(Step(task_id=task.id, index=0, stage="answer", agent=Agent(model="m"), output="o", cost_usd=0.1))
memory.flush()
print(json.dumps({"before": before, "after": locks(), "alive": memory.running_tasks().alive}))
memory.close()
"""


def test_a_forked_child_leaves_the_parents_lease_and_claims_alone(tmp_path, postgres_url):
    """A process forks workers after its memory took the lease and a claim; the children close their
    copy of the memory, or just exit: the parent still holds both, on the same session (before: the
    child's exit closed the shared connection, so the parent's lease and claim were gone and another
    host's reconcile could close its running task)."""
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_memory_lease_fork")
    script = tmp_path / "forks.py"
    script.write_text(FORKS)
    done = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert [mode for mode, _ in found["before"]] == ["ExclusiveLock", "ShareLock"]  # the claim, the lease
    assert found["after"] == found["before"]
    assert found["alive"] == ["parent-task"]


class SlowConnectProxy:
    """A TCP relay on loopback to the PostgreSQL server that waits ``delay_s`` before each new
    connection goes through (a far-away server: a TLS handshake and authentication over a WAN)."""

    def __init__(self, port: int, delay_s: float) -> None:
        import socket
        import threading

        self.upstream, self.delay_s = port, delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list = []
        self.threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        import threading

        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        import socket

        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            time.sleep(self.delay_s)
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, server]
            self._spawn(self._pipe, client, server)
            self._spawn(self._pipe, server, client)

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        import socket

        self._stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not (a 10 s join)
        except OSError:
            pass
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
        for thread in self.threads:
            thread.join(10)


def test_the_lease_is_taken_off_the_callers_thread(postgres_url):
    """start_task only enqueues, also the first one on a PostgreSQL memory: the lease's connection
    is opened by the writer thread, before it writes the task row (before: on the caller's thread,
    a connection's round trips inside the event loop's step; here a second through a slow network)."""
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database
    from agentroute.types import Task

    url = sa.engine.make_url(create_database(postgres_url, "agentroute_memory_lease_hot"))
    proxy = SlowConnectProxy(url.port, delay_s=0.5)  # a connect on the caller's thread alone exceeds the 0.3 s below
    try:
        memory = SQLMemory(url.set(port=proxy.port).render_as_string(hide_password=False))
        try:
            started = time.perf_counter()
            memory.start_task(Task(id="hot-task", query="q", graph="qa"))
            assert time.perf_counter() - started < 0.3
            memory.flush()
            assert memory.running_tasks().alive == ["hot-task"]
        finally:
            memory.close()
        task = _task(url.render_as_string(hide_password=False), "hot-task")
        assert task["meta"]["agentroute_process"]["lease"] is True  # taken before the row was written
    finally:
        proxy.close()
