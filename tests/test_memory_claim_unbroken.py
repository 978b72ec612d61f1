"""``claim_unbroken``: the claim fence without a round trip, for each paid call. The lease's own
check (every ``$AGENTROUTE_LEASE_CHECK_S``) finds the session that took a claim ended
(``pg_terminate_backend``, as a restart, an idle-session killer or a network cut would) and the
claim reads broken from then on, with no statement from the caller."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from agentroute.types import Task

pytestmark = pytest.mark.postgres


def test_a_claim_whose_session_ended_reads_broken_within_a_lease_check(postgres_url, monkeypatch):
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.2")
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database

    memory = SQLMemory(create_database(postgres_url, "agentroute_memory_claim_unbroken"))
    try:
        assert memory.claim_task("t1") and memory.claim_unbroken("t1")
        assert not memory.claim_unbroken("t2")  # never claimed
        memory.start_task(Task(id="t1", query="q", graph="qa"))
        memory.flush()  # the writer took this process's lease: its check runs every 0.2 s
        with memory.engine.begin() as conn:
            [session] = conn.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )).scalars().all()  # fmt: skip
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": session}).scalar_one()
        deadline = time.monotonic() + 5
        while memory.claim_unbroken("t1"):  # no call here touches the claims' connection
            assert time.monotonic() < deadline, "still unbroken 5 s after its session ended"
            time.sleep(0.02)
        assert not memory.confirm_claim("t1")  # the server agrees
        assert memory.claim_task("t3") and memory.claim_unbroken("t3")  # a claim on the new session holds
    finally:
        memory.close()


def test_sqlite_claims_are_always_unbroken(tmp_path):
    from agentroute.memory import SQLMemory

    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        assert memory.claim_unbroken("anything")
