"""The scale-out path as a team that outgrew one machine uses it: worker processes sharing one
PostgreSQL memory, a server restarted under them, bad URLs and hosts that never answer.

Workers are real OS processes (``python -c``) against a real server on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentroute
from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryStoreError
from agentroute.memory.pgserver import PostgresServer, find_bindir

ROOT = Path(agentroute.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """The environment of a worker process: this checkout's agentroute first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _worker(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )  # fmt: skip


# -- bad URLs and hosts that never answer -------------------------------------------------------
@pytest.mark.parametrize("url", ["postgresql://ann:s3cret@127.0.0.1:/memory", "postgresql://ann:s3cret@db:5432x/memory"])
def test_a_port_that_is_not_a_number_is_a_clear_error_that_hides_the_password(url: str) -> None:
    # was: ValueError "invalid literal for int() with base 10: ''" (a traceback from the CLI)
    with pytest.raises(ConfigurationError, match="invalid memory URL") as info:
        SQLMemory(url)
    assert "s3cret" not in str(info.value) and "ann:***@" in str(info.value)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


def test_a_host_that_never_answers_fails_clearly_within_seconds(silent_port: int, monkeypatch) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    started = time.monotonic()
    result: dict[str, BaseException] = {}

    def open_it() -> None:  # in a thread: the old code hung forever and must not hang the suite
        try:
            SQLMemory(f"postgresql://ann:s3cret@127.0.0.1:{silent_port}/memory").close()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            result["error"] = exc

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "opening the memory on a host that never answers hung"
    assert isinstance(result.get("error"), MemoryStoreError) and "timeout" in str(result["error"])
    assert "s3cret" not in str(result["error"])
    assert time.monotonic() - started < 15


# -- a server restarted under a running worker --------------------------------------------------
WRITER = """
import sys, time, json
from agentroute.memory import SQLMemory
from agentroute.types import Agent, AuditEvent, Step, Task
memory = SQLMemory(sys.argv[1], flush_interval_s=0.01)
print("ready", flush=True)
n, stop = 0, False
import threading
threading.Thread(target=lambda: (sys.stdin.readline(), globals().__setitem__("stop", True)), daemon=True).start()
while not stop and n < 5000:
    task = Task(id=f"{sys.argv[2]}-{n}", query="q", graph="g")
    memory.start_task(task)
    for k in range(2):
        memory.record_step(Step(task_id=task.id, index=k, stage="s", agent=Agent(model="m"), cost_usd=0.001))
    memory.record_audit(AuditEvent(task_id=task.id, stage="s", kind="retry"))
    task.status, task.cost_usd = "done", 0.002
    memory.finish_task(task)
    memory.add_feedback(task.id, 1.0)
    n += 1
    time.sleep(0.01)
try:
    memory.close()
    print(json.dumps({"tasks": n}), flush=True)
except Exception as exc:
    print(json.dumps({"tasks": n, "error": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
"""


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone (it is restarted under its clients)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'agentroute[postgres]'")
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    server = PostgresServer(durable=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_server_restart_under_two_writing_workers_loses_no_write(own_server: PostgresServer) -> None:
    SQLMemory(own_server.url).close()  # the schema, once
    workers = [_worker(WRITER, own_server.url, f"w{k}") for k in range(2)]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready", w.stderr
        time.sleep(0.5)
        own_server.restart(down_s=2.5)  # every open connection is cut; 2.5 s without a server
        time.sleep(0.5)
        reports = []
        for w in workers:
            out, err = w.communicate("stop\n", timeout=60)
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    # was: "MemoryWriteError: … OperationalError: connection refused" at close, those tasks gone
    assert all("error" not in r for r in reports), reports
    total = sum(r["tasks"] for r in reports)
    with SQLMemory(own_server.url) as memory:
        stats = memory.stats()
    assert stats["tasks"] == {"done": total} and stats["steps"] == 2 * total
    assert stats["feedback"] == total and stats["audit_events"] == total
