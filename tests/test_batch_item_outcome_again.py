"""A batch item's outcome written twice (the writer commits a batch again when the reply to its
``COMMIT`` was lost: task upserts and item writes alone cannot tell it was stored) is stored once,
as written: the item stays ``done`` and its task ``done``, and its ``--out`` callback runs. An item
write is refused only when the item was handed over (a reconcile retired its worker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agentroute.memory import SQLMemory, open_memory
from agentroute.memory.batches import BatchQueue
from agentroute.types import Task


def test_the_same_outcome_written_again_is_not_taken_for_a_handed_over_item(tmp_path: Path) -> None:
    with open_memory(f"sqlite:///{tmp_path}/m.db") as memory:
        queue = BatchQueue(memory, "b")
        queue.add([("q1", {"query": "one"})])
        queue.join()
        assert [c.query_id for c in queue.claim(1)] == ["q1"]
        task = Task(query="one", metadata={"query_id": "q1"})
        task.status = "done"
        memory.start_task(task)
        memory.finish_task(task)
        written: list[int] = []
        for _ in range(2):  # the second: the same writes committed again
            memory.finish_task(task)
            queue.finish("q1", status="done", task_id=task.id, cost_usd=0.5, on_commit=lambda row: written.append(1))
            memory.flush()
        assert queue.items() == [{"query_id": "q1", "status": "done", "task_id": task.id, "attempts": 1,
                                  "cost_usd": 0.5, "error": None, "worker": queue.worker_id}]  # fmt: skip
        stored = memory.get_task(task.id)
        assert stored is not None and stored.task.status == "done"
        assert written == [1, 1]


def test_item_outcomes_of_one_batch_are_written_in_one_statement(tmp_path: Path) -> None:
    """None refused (the common case): one ``executemany`` for the batch's items, as before the
    handed-over check (was: one statement per item, N round trips on PostgreSQL)."""
    with SQLMemory(f"sqlite:///{tmp_path}/m.db", flush_interval_s=5.0) as memory:  # one batch: flush() commits it
        queue = BatchQueue(memory, "b")
        queue.add([(f"q{i}", {"query": "one"}) for i in range(3)])
        queue.join()
        assert len(queue.claim(3)) == 3
        calls: list[bool] = []

        def count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
            if statement.lstrip().upper().startswith("UPDATE BATCH_ITEMS"):
                calls.append(executemany)

        sa.event.listen(memory.engine, "before_cursor_execute", count)
        for i in range(3):
            queue.finish(f"q{i}", status="done", task_id=f"t{i}", cost_usd=0.1)
        memory.flush()
        assert calls == [True], calls
        assert [i["status"] for i in queue.items()] == ["done"] * 3
