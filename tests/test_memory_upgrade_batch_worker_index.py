"""A memory made by the previous release (schema 0003, with batch and other tasks in it) upgrades on
its first open by this one, also when two open it at once (two engines, as two processes: the
database's lock serialises them), and a batch worker's tasks are then found through the new index
(migration 0004), old rows included, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading

import sqlalchemy as sa
from alembic import command

from agentroute.memory import SQLMemory
from agentroute.memory.batches import BatchQueue
from agentroute.memory.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL


def test_an_older_memory_upgrades_when_two_open_it_at_once(memory_url: str) -> None:  # noqa: F811
    engine, *engines = [sa.create_engine(memory_url) for _ in range(3)]  # the last two: two openers at once
    try:
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
            insert = sa.text("INSERT INTO tasks (id, query, graph, status, cost_usd, meta, created_at) "
                             "VALUES (:id, 'q', '', 'done', 0, :meta, CURRENT_TIMESTAMP)")  # fmt: skip
            conn.execute(insert, [
                {"id": f"t{i}", "meta": json.dumps({"agentroute_batch": {"id": "b", "worker": f"w{i % 3}"}} if i % 2 else {})}
                for i in range(60)
            ])  # fmt: skip
        start, ran, errors = threading.Barrier(2), [], []

        def open_it(mine: sa.Engine) -> None:
            start.wait(timeout=10)
            try:
                ran.append(upgrade(mine))  # what a memory's first open runs
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        openers = [threading.Thread(target=open_it, args=(e,)) for e in engines]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(timeout=60)
        assert errors == [] and sorted(ran) == [False, True]  # one migrated, the other found it done
        assert current_revision(engine) == head_revision()
    finally:
        for each in (engine, *engines):
            each.dispose()
    with SQLMemory(memory_url) as memory:
        queue = BatchQueue(memory, "b")
        queue.worker_id = "w1"
        assert sorted(queue.own_tasks(), key=lambda t: int(t[1:])) == [f"t{i}" for i in range(60) if i % 2 and i % 3 == 1]
        assert "ix_tasks_batch_worker" in _indexes(memory.engine)


def _indexes(engine: sa.Engine) -> set[str]:
    """The indexes of ``tasks`` (SQLAlchemy's inspector leaves SQLite's on expressions out)."""
    sql = {"sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'",
           "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'tasks'"}[engine.dialect.name]  # fmt: skip
    with engine.connect() as conn:
        return set(conn.exec_driver_sql(sql).scalars())
