"""Batch workers' heartbeats are written and judged by the database server's clock, not a worker's:
hosts whose clocks differ by minutes neither retire a live worker nor keep a dead one.

Real PostgreSQL server on loopback, whose clock, as SQL sees it, runs ``SKEW`` minutes off this
host's: the database's ``now()`` is a function in a schema ahead of ``pg_catalog`` on its search
path (a database server on a machine whose clock differs). A worker "on the database's machine"
writes its heartbeat by that clock (``now()`` in SQL, as its own clock would read); the reconciler
runs here, ``SKEW`` minutes off.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.memory.batches import BatchQueue

pytestmark = pytest.mark.postgres

SKEW = 10  # minutes between the database server's clock and this host's
LEASE_S = 60.0


def _skewed_memory(postgres_url: str, minutes: int) -> tuple[SQLMemory, sa.Engine]:
    """A memory, and an engine, on a new database whose clock runs ``minutes`` off this host's."""
    from agentroute.memory.pgserver import create_database

    name = f"skew_{os.getpid()}_{time.monotonic_ns()}"
    url = create_database(postgres_url, name)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE SCHEMA clock")
        conn.exec_driver_sql(
            "CREATE FUNCTION clock.now() RETURNS timestamptz LANGUAGE sql STABLE "
            f"AS $$ SELECT pg_catalog.now() + interval '{minutes} minutes' $$"
        )
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET search_path = public, clock, pg_catalog')
    engine.dispose()
    engine = sa.create_engine(url)
    with engine.connect() as conn:  # the server's clock is off, as SQL sees it
        server = conn.execute(sa.text("SELECT now()")).scalar_one()
    assert abs(server - datetime.now(UTC) - timedelta(minutes=minutes)) < timedelta(minutes=1)
    return SQLMemory(url), engine


def _far_worker(memory: SQLMemory) -> BatchQueue:
    """A worker registered from the database server's machine (another host than this one)."""
    worker = BatchQueue(memory, "b1", worker_id="far", lease_s=LEASE_S)
    worker.host = "db-host/boot"
    worker.join()
    return worker


def _beat_by_server_clock(engine: sa.Engine, ago_s: float) -> None:
    """The far worker's last heartbeat, ``ago_s`` seconds ago by its clock (the server's)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE batch_workers SET heartbeat_at = now() - interval '{ago_s} seconds' WHERE id = 'far'"))


def _status(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT status FROM batch_workers WHERE id = 'far'")).scalar_one()


def test_a_live_worker_is_kept_when_this_host_s_clock_runs_ahead(postgres_url: str) -> None:
    """Before: judged by this host's clock, ten minutes ahead of the worker's, a heartbeat of a
    second ago looked ten minutes old: the live worker was retired and its items run again."""
    memory, engine = _skewed_memory(postgres_url, -SKEW)
    try:
        _far_worker(memory)
        _beat_by_server_clock(engine, 1)
        here = BatchQueue(memory, "b1", lease_s=LEASE_S)
        assert here.reconcile().workers == ()
        assert _status(engine) == "running"
    finally:
        memory.close()
        engine.dispose()


def test_a_dead_worker_is_retired_when_this_host_s_clock_runs_behind(postgres_url: str) -> None:
    """Before: judged by this host's clock, ten minutes behind, a heartbeat of two minutes ago (lease
    60 s) looked eight minutes in the future: the dead worker's items stayed claimed."""
    memory, engine = _skewed_memory(postgres_url, SKEW)
    try:
        _far_worker(memory)
        _beat_by_server_clock(engine, 120)
        here = BatchQueue(memory, "b1", lease_s=LEASE_S)
        assert here.reconcile().workers == ("far",)
        assert _status(engine) == "dead"
    finally:
        memory.close()
        engine.dispose()


def test_heartbeats_are_written_by_the_server_s_clock(postgres_url: str) -> None:
    """Before: a worker wrote its own clock's time, ten minutes off the server's."""
    memory, engine = _skewed_memory(postgres_url, SKEW)
    try:
        worker = _far_worker(memory)
        assert worker.heartbeat()
        with engine.connect() as conn:
            beat, server = conn.execute(sa.text("SELECT heartbeat_at, now() FROM batch_workers WHERE id = 'far'")).one()
        assert abs(server - beat) < timedelta(seconds=30)
        assert BatchQueue(memory, "b1", lease_s=LEASE_S).reconcile().workers == ()
    finally:
        memory.close()
        engine.dispose()
