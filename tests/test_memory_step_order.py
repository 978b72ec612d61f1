"""One order of a task's steps (index, creation time, id) for every reader: the memory's reads, its
Parquet export and tables built from trajectories. The export ordered by index and time only, so
the steps of a fan-out (one index, created at the same instant) came out in whatever order the
database found them, unlike the trajectories read from the same memory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from agentroute.memory import SQLMemory
from agentroute.outcomes import ordered_steps
from agentroute.types import Agent, Step, Task
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_every_reader_orders_a_fan_out_by_id(memory_url: str, tmp_path: Path) -> None:  # noqa: F811
    memory = SQLMemory(memory_url)
    try:
        memory.start_task(Task(id="fan", query="q", status="running"))
        ids = [f"s{k}" for k in range(9, -1, -1)]  # stored in reverse id order, all at one instant, one index
        memory.record_steps(Step(id=i, task_id="fan", index=1, stage="s", agent=Agent(model="m"), created_at=AT) for i in ids)
        memory.record_step(Step(id="a-first", task_id="fan", index=0, stage="s", agent=Agent(model="m"), created_at=AT))
        memory.finish_task(Task(id="fan", query="q", status="done"))
        memory.flush()
        trajectory = memory.get_task("fan")
        assert trajectory is not None
        read = [s.id for s in trajectory.steps]
        memory.export_parquet(tmp_path / "out.parquet")
        exported = pq.read_table(tmp_path / "out.parquet").column("step_id").to_pylist()
    finally:
        memory.close()
    expected = ["a-first", *sorted(ids)]
    assert read == expected
    assert [s.id for s in ordered_steps(trajectory)] == expected
    assert exported == expected
