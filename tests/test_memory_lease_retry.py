"""A lease the server refused once is taken later: a process that started while the server was out
of connections (or down) gets its lease once the server takes it, so another host can tell it runs."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres


def test_a_lease_refused_at_first_is_taken_at_a_later_task(postgres_url, monkeypatch):
    """The role's connection limit leaves no room for the lease's connection when the first task is
    written; once there is room, the next task written takes it (before: never tried again, every
    task of the process stayed without a lease, so no other host could tell it ran)."""
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.2")
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database
    from agentroute.types import Task

    url = sa.make_url(create_database(postgres_url, "agentroute_memory_lease_retry"))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS lease_worker")
        conn.exec_driver_sql("CREATE ROLE lease_worker LOGIN PASSWORD 'pw'")
        conn.exec_driver_sql(f'ALTER DATABASE "{url.database}" OWNER TO lease_worker')
        conn.exec_driver_sql("ALTER SCHEMA public OWNER TO lease_worker")
    worker_url = url.set(username="lease_worker", password="pw").render_as_string(hide_password=False)

    def limit(n: int) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER ROLE lease_worker CONNECTION LIMIT {n}")

    memory = SQLMemory(worker_url)
    try:
        memory.running_tasks()  # the writer's connection waits in the pool
        with admin.connect() as conn:
            sessions = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE usename = 'lease_worker'"))
            limit(sessions.scalar_one())  # no room for one more: the lease's connection is refused
        memory.start_task(Task(id="first", query="q", graph="qa"))
        memory.flush()
        limit(-1)
        time.sleep(0.3)  # one lease check later
        memory.start_task(Task(id="second", query="q", graph="qa"))
        memory.flush()
        with admin.connect() as conn:
            leases = dict(conn.execute(sa.text(
                "SELECT id, (meta::jsonb -> 'agentroute_process' ->> 'lease')::boolean FROM tasks"
            )).all())  # fmt: skip
        assert leases == {"first": None, "second": True}  # written without a lease, then with it
        assert memory.running_tasks().alive == ["first", "second"]
    finally:
        memory.close()
        admin.dispose()
