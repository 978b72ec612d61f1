"""A full disk that refuses a task's end, then has room for its batch item (a smaller commit, or
space freed meanwhile): the item is not marked ended and no ``--out`` line is written for it,
since the task's stored row still says ``running``. Before, the item went in (``failed``: its step
was lost) and its ``on_commit`` wrote a ``done`` line; the resume reran the query and wrote a second
``done`` line (CI: ``test_batch_disk_full``, out.jsonl held id4–id7 twice).

The disk is a real file-size limit (``RLIMIT_FSIZE``) on a child process writing a real SQLite
memory: set to the WAL's size, so that no commit can grow it, then lifted."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, os, resource, signal, sys

    from agentroute.memory import SQLMemory
    from agentroute.memory.batches import META_KEY, BatchQueue
    from agentroute.memory.errors import MemoryWriteError
    from agentroute.types import Agent, Step, Task

    path = sys.argv[1]
    memory = SQLMemory(f"sqlite:///{path}", retry_s=0.2)
    queue = BatchQueue(memory, "b")
    queue.add([("q1", {"query": "q"})])
    queue.join()
    [claimed] = queue.claim(1)
    task = Task(query="q", metadata={"query_id": "q1", META_KEY: {"id": "b", "worker": queue.worker_id}})
    memory.start_task(task)
    memory.flush()

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path + "-wal"), hard))  # the disk is full
    memory.record_step(Step(task_id=task.id, index=0, stage="answer", agent=Agent(model="m"), output="a", cost_usd=0.1))
    task.status, task.answer, task.cost_usd = "done", "a", 0.1
    memory.finish_task(task)
    refused = ""
    try:
        memory.flush()
    except MemoryWriteError as exc:
        refused = str(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again

    lines = []
    queue.finish("q1", status="done", task_id=task.id, cost_usd=0.1, on_commit=lambda *row: lines.append("done"))
    held = ""
    try:
        memory.flush()
    except MemoryWriteError as exc:
        held = str(exc)
    [item] = queue.items()
    queue.leave()  # the run ends: what it claimed and did not end is handed over
    [left] = queue.items()
    stored = memory.get_task(task.id).task
    memory.close()
    print(json.dumps({"refused": refused, "held": held, "lines": lines, "item": item["status"], "left": left["status"],
                      "task": stored.status, "cost": stored.cost_usd}))
    """
)


def test_a_batch_item_whose_task_end_the_full_disk_refused_is_not_marked_ended_nor_written(tmp_path):
    command = [sys.executable, "-c", CHILD, str(tmp_path / "memory.db")]
    child = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout.splitlines()[-1])
    # the disk did refuse the task's end
    assert "disk I/O error" in out["refused"] and "finish_task" in out["refused"], out
    assert out["lines"] == [], out  # before: ["done"], a line for a query that stays to do
    assert out["item"] == "running" and "the end of task" in out["held"] and "held back" in out["held"], out
    # as after a crash: the claim and the task are closed `interrupted`, with the cost of their stored
    # steps (none), and the query is claimable again (before: item `failed`, the task left `running`)
    assert (out["left"], out["task"], out["cost"]) == ("interrupted", "interrupted", 0.0), out
