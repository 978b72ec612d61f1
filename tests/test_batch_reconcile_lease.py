"""A batch worker of another host whose heartbeat is late but whose process holds its lease is
alive: ``BatchQueue.reconcile`` leaves its task and item alone; once the process is gone (``kill
-9``: its lease is released with its session), the same reconcile retires it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres

WORKER = """
import socket, sys
socket.gethostname = lambda: "batch-host-b"  # another machine, as far as the memory can tell
from agentroute.memory import SQLMemory
from agentroute.memory.batches import META_KEY, BatchQueue
from agentroute.types import Task

memory = SQLMemory(sys.argv[1])
queue = BatchQueue(memory, "b1", worker_id="far-worker")
queue.join()
[claimed] = queue.claim(1)
memory.start_task(Task(id="far-task", query="q", graph="qa",
                       metadata={"query_id": claimed.query_id, META_KEY: {"id": "b1", "worker": queue.worker_id}}))
memory.flush()
print("ready", flush=True)
sys.stdin.read()  # alive (and holding its lease) until the test kills it; it never beats again
"""


def _statuses(engine: sa.Engine) -> tuple[str, str, str]:
    with engine.connect() as conn:
        task = conn.execute(sa.text("SELECT status FROM tasks WHERE id = 'far-task'")).scalar_one()
        item = conn.execute(sa.text("SELECT status FROM batch_items WHERE query_id = 'q1'")).scalar_one()
        worker = conn.execute(sa.text("SELECT status FROM batch_workers WHERE id = 'far-worker'")).scalar_one()
    return task, item, worker


def test_a_late_heartbeat_with_a_held_lease_is_not_reconciled(tmp_path, postgres_url):
    """Before: decided by the heartbeat alone, so a live worker whose heartbeat was late (a stalled
    thread, a slow network) had its running task closed ``interrupted`` and its item handed to
    another worker, which ran and paid for it again."""
    from agentroute.memory import SQLMemory
    from agentroute.memory.batches import BatchQueue
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_batch_reconcile_lease")
    memory = SQLMemory(url)
    proc = None
    try:
        BatchQueue(memory, "b1").add([("q1", {"query": "q"})])
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        proc = subprocess.Popen([sys.executable, str(script), url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", line + proc.stdout.read()
        with memory.engine.begin() as conn:  # its last heartbeat, an hour ago
            conn.execute(sa.text("UPDATE batch_workers SET heartbeat_at = :t WHERE id = 'far-worker'"),
                         {"t": datetime.now(UTC) - timedelta(hours=1)})  # fmt: skip
        here = BatchQueue(memory, "b1", lease_s=60)
        assert here.reconcile().workers == ()
        assert _statuses(memory.engine) == ("running", "running", "running")
        assert here.claim(1) == []  # its item stays its own

        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 10
        while memory.running_tasks().gone != ["far-task"]:  # the server ends its session (ms)
            assert time.monotonic() < deadline, "its lease is still held"
            time.sleep(0.05)
        done = here.reconcile()
        assert (done.workers, done.tasks, done.items) == (("far-worker",), 1, 1)
        assert _statuses(memory.engine) == ("interrupted", "interrupted", "dead")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        memory.close()
