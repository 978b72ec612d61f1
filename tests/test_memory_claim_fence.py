"""A worker whose claim's session was lost is told so before its next paid call, even when it got
the claim back: another worker may have claimed the task and run steps of it meanwhile.

Two memories in this process stand for two workers: each holds its claims on its own PostgreSQL
session; the first one's session is ended by the server (``pg_terminate_backend``), as a restart, an
idle-session killer or a network cut would."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres


def _claim_sessions(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )).scalars())  # fmt: skip


def _end(engine: sa.Engine, pid: int) -> None:
    """End the session and wait (up to 5 s) until it is gone: the server signals the backend and
    returns at once without the timeout, so its locks could still be held on the next line."""
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar_one()


def _wait_for(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_claim_lost_with_its_session_is_not_confirmed(postgres_url, monkeypatch):
    """Before: nothing told the first worker; it went on paying for a task the second one ran."""
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.3")
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_memory_claim_fence")
    first, second = SQLMemory(url), SQLMemory(url)
    try:
        assert first.claim_task("t1") and first.confirm_claim("t1")
        assert not second.claim_task("t1")
        [session] = _claim_sessions(first.engine)
        _end(first.engine, session)
        assert second.claim_task("t1")  # at once: the lock went with the first one's session
        assert not first.confirm_claim("t1")  # so the first one stops before its next paid call
        assert not first.confirm_claim("t1")  # and stays stopped on its new session
        assert first.claim_task("t2") and first.confirm_claim("t2")  # a claim taken on it holds
    finally:
        first.close()
        second.close()


def test_a_claim_taken_back_after_a_break_is_not_confirmed(postgres_url, monkeypatch):
    """The session ends; the other worker claims the task, runs a step and releases it before the
    first one's lease check takes the claim back: the first one holds the lock again, but its idea
    of the task is stale, so its claim is not confirmed (a break fences it, not only a loss)."""
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.3")
    from agentroute.memory import SQLMemory
    from agentroute.memory.pgserver import create_database
    from agentroute.types import Task

    url = create_database(postgres_url, "agentroute_memory_claim_fence_back")
    first, second = SQLMemory(url), SQLMemory(url)
    try:
        first.start_task(Task(id="lease", query="q", graph="qa"))  # its lease check thread starts
        first.flush()
        assert first.claim_task("t1")
        [session] = _claim_sessions(first.engine)
        _end(first.engine, session)
        assert second.claim_task("t1")
        second.release_task("t1")
        _wait_for(lambda: (s := _claim_sessions(first.engine)) != [] and s != [session])  # taken back
        assert not first.confirm_claim("t1")
    finally:
        first.close()
        second.close()
