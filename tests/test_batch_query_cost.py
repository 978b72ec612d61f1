"""A batch query's cost counts each of its tasks once: the interrupted tasks a rerun continues are
those since the query's latest ended task, not those an earlier (failed) rerun already continued.

Stored in a real SQLite memory: a query interrupted (task 1), rerun and failed (task 2, whose
``--out`` line holds task 1's cost), interrupted again (task 3). Before, a ``--resume`` retry of it
continued tasks 1 and 3: its line counted task 1 a second time, and its budget was charged it again.
"""

from __future__ import annotations

from pathlib import Path

from agentroute.memory import open_memory
from agentroute.memory.batches import META_KEY, BatchQueue
from agentroute.types import Task


def test_a_rerun_continues_only_the_interrupted_tasks_since_the_querys_latest_ended_task(tmp_path: Path) -> None:
    memory = open_memory(f"sqlite:///{tmp_path}/m.db")
    try:
        ids = []
        for status, cost, batch in (("interrupted", 1.0, "b"), ("failed", 2.0, "b"), ("interrupted", 4.0, "b"), ("interrupted", 8.0, "other")):
            task = Task(query="q?", graph="g", metadata={"query_id": "q1", META_KEY: {"id": batch, "worker": "w"}})
            memory.start_task(task)
            task.status, task.cost_usd = status, cost  # type: ignore[assignment]
            memory.finish_task(task)
            ids.append(task.id)
        memory.flush()
        queue = BatchQueue(memory, "b")
        assert queue.interrupted_tasks("q1") == {ids[2]: 4.0}  # was: {task 1: 1.0, task 3: 4.0}
        assert queue.interrupted_tasks("q2") == {}
        assert queue.task_costs([ids[2], "missing", ids[0]]) == {ids[2]: 4.0, ids[0]: 1.0}
    finally:
        memory.close()
