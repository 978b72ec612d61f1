"""A lease statement that stalls is given up within bounded time: the process's writes go on, and
the lease is taken once the stall ends (a lock held by another session, a stalled server)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres


def test_a_stalled_lease_statement_does_not_stop_the_writes(postgres_url, monkeypatch):
    """Another session holds this process's lease key exclusively, so taking the lease waits: the
    statement is cancelled after about a second (the lease connection's ``statement_timeout``), the
    task is written without a lease, and the lease is taken before a later task once the key is free
    (before: the memory's writer thread waited forever on it, so ``flush()`` never returned and no
    task was written at all)."""
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.3")
    from agentroute.memory import SQLMemory
    from agentroute.memory.claims import lease_key
    from agentroute.memory.pgserver import create_database
    from agentroute.memory.processes import this_process
    from agentroute.types import Task

    url = create_database(postgres_url, "agentroute_memory_lease_stall")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    blocker = admin.connect()
    memory = SQLMemory(url)
    try:
        raw = memory._claims.engine.raw_connection()  # noqa: SLF001 - the lease's connection: bounded TCP
        try:
            dsn = raw.driver_connection.info.dsn
        finally:
            raw.close()
        assert "tcp_user_timeout=3000" in dsn and "keepalives_idle=1" in dsn, dsn
        assert blocker.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lease_key(this_process())}).scalar_one()
        memory.start_task(Task(id="stalled", query="q", graph="qa"))
        flushed = threading.Thread(target=memory.flush, daemon=True)
        flushed.start()
        flushed.join(8)
        assert not flushed.is_alive(), "flush() still waits on the lease"
        blocker.execute(sa.text("SELECT pg_advisory_unlock_all()"))
        time.sleep(0.4)  # a lease check later
        memory.start_task(Task(id="after", query="q", graph="qa"))
        memory.flush()
        with admin.connect() as conn:
            leases = dict(conn.execute(sa.text(
                "SELECT id, (meta::jsonb -> 'agentroute_process' ->> 'lease')::boolean FROM tasks"
            )).all())  # fmt: skip
        assert leases == {"stalled": None, "after": True}
    finally:
        blocker.close()
        memory.close()
        admin.dispose()
