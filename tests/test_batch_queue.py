"""The durable work queue of a batch (`agentroute.memory.batches`), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from agentroute.memory import SQLMemory
from agentroute.memory.batches import META_KEY, BatchQueue
from agentroute.types import Agent, Step, Task
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL


@pytest.fixture
def memory(memory_url: str):  # noqa: F811
    store = SQLMemory(memory_url, flush_interval_s=0.005)
    yield store
    store.close()


def _dead(memory: SQLMemory, batch: str) -> BatchQueue:
    """A worker registered as running on this host with a pid that no longer exists."""
    queue = BatchQueue(memory, batch, worker_id="dead-worker")
    queue.pid = 2**22 + 12345  # above Linux's pid_max default: never a live process
    queue.join()
    return queue


def test_adding_the_same_items_twice_keeps_one_row_each_and_their_order(memory):
    queue = BatchQueue(memory, "b")
    assert queue.add([(f"q{i}", {"query": f"{i}?"}) for i in range(5)]) == 5
    assert queue.add([(f"q{i}", {"query": "changed"}) for i in range(7)]) == 2
    queue.join()
    claimed = queue.claim(10)
    assert [c.query_id for c in claimed] == [f"q{i}" for i in range(7)]
    assert claimed[0].item == {"query": "changed"} and claimed[0].attempt == 1  # a pending item takes the line as edited


def test_concurrent_claimers_never_get_the_same_item(memory):
    BatchQueue(memory, "b").add([(f"q{i}", {"query": str(i)}) for i in range(200)])
    got: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        queue = BatchQueue(memory, "b")
        queue.join()
        while claimed := queue.claim(3):
            with lock:
                got.extend(c.query_id for c in claimed)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(got) == Counter({f"q{i}": 1 for i in range(200)})


def test_reconcile_marks_a_dead_workers_running_tasks_interrupted_with_their_steps_cost(memory):
    dead = _dead(memory, "b")
    dead.add([("q1", {"query": "one"}), ("q2", {"query": "two"}), ("q3", {"query": "three"})])
    assert [c.query_id for c in dead.claim(3)] == ["q1", "q2", "q3"]
    tag = {META_KEY: {"id": "b", "worker": "dead-worker"}}
    running = Task(query="one", metadata={"query_id": "q1", **tag})
    finished = Task(query="two", metadata={"query_id": "q2", **tag})
    agent = Agent(role="executor", model="m", strategy="direct")
    for task in (running, finished):
        memory.start_task(task)
        memory.record_step(Step(task_id=task.id, index=0, stage="s", agent=agent, cost_usd=0.25))
    finished.status, finished.cost_usd = "done", 0.25
    memory.finish_task(finished)  # killed before the item's own write: the item still says running
    memory.flush()

    alive = BatchQueue(memory, "b")
    alive.join()
    repaired = alive.reconcile()
    assert repaired.workers == ("dead-worker",) and repaired.tasks == 1 and repaired.items == 2
    task = memory.get_task(running.id)
    assert task is not None and task.task.status == "interrupted" and task.task.cost_usd == 0.25
    rows = {r["query_id"]: r for r in alive.items()}
    assert rows["q2"]["status"] == "done" and rows["q2"]["task_id"] == finished.id  # not run again
    assert rows["q1"]["status"] == rows["q3"]["status"] == "interrupted"
    assert [c.query_id for c in alive.claim(5)] == ["q1", "q3"]
    assert alive.reconcile().workers == ()  # nothing left to repair


def test_a_live_worker_on_this_host_is_never_reconciled(memory):
    first = BatchQueue(memory, "b")
    first.add([("q1", {"query": "one"})])
    first.join()
    first.claim(1)
    second = BatchQueue(memory, "b")  # same process: alive
    second.join()
    assert second.reconcile().workers == () and second.counts() == {"running": 1}


def test_release_and_leave_give_unstarted_and_unfinished_items_back(memory):
    queue = BatchQueue(memory, "b")
    queue.add([(f"q{i}", {"query": str(i)}) for i in range(3)])
    queue.join()
    queue.claim(3)
    queue.release(["q2"])
    queue.finish("q0", status="done", task_id="t0", cost_usd=0.0)
    assert queue.leave().items == 1  # q1 was running: interrupted
    assert queue.counts() == {"done": 1, "interrupted": 1, "pending": 1}


def test_failed_items_are_retried_only_once_their_worker_is_gone(memory):
    first = BatchQueue(memory, "b")
    first.add([("q1", {"query": "one"})])
    first.join()
    first.claim(1)
    first.finish("q1", status="failed", task_id="t1", cost_usd=0.0, error="boom")
    memory.flush()
    other = BatchQueue(memory, "b")
    other.join()
    assert other.claim(1, retry_failed=True) == []  # its worker still runs: not retried behind its back
    first.leave()
    assert [c.attempt for c in other.claim(1, retry_failed=True)] == [2]
