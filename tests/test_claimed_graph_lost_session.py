"""A claimed graph invocation whose claim's database session ends (a PostgreSQL restart, an idle
session killer, a network cut: here ``pg_terminate_backend``) makes no further paid call: its next
routed call is refused with ``TaskBusyError`` before the provider sees it — another worker may
have taken the thread over. Before, it kept paying for the rest of the run.

Real PostgreSQL on loopback and a real user StateGraph under ``claiming(app, memory)``; the steps
the memory stored count the calls paid.
"""

from __future__ import annotations

import os
import time

import pytest
import sqlalchemy as sa

import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory, TaskBusyError
from tests.helpers import replay_pool

pytestmark = pytest.mark.postgres


class State(ag.AgentrouteState, total=False):
    query: str
    query_id: str
    answer: str


def _end_claim_session(memory: SQLMemory) -> None:
    """Terminate the session holding this database's exclusive advisory locks (the claims')."""
    with memory.engine.begin() as conn:
        pids = conn.execute(sa.text(
            "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )).scalars().all()  # fmt: skip
        assert pids, "no claim session to end"
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_no_routed_call_is_paid_after_the_claims_session_ends(postgres_url, monkeypatch):
    from langgraph.graph import START, StateGraph

    from agentroute.memory.pgserver import create_database

    saver_module = pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
    monkeypatch.setenv("AGENTROUTE_LEASE_CHECK_S", "0.2")
    db = create_database(postgres_url, f"lostclaim_{os.getpid()}_{time.monotonic_ns()}")
    saver_url = db.replace("postgresql+psycopg://", "postgresql://")
    with SQLMemory(db) as memory, saver_module.PostgresSaver.from_conn_string(saver_url) as saver:
        saver.setup()
        pool = replay_pool()
        dispatcher = Dispatcher(pool, make_router("cheapest"), memory=memory)
        first = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=4))

        def cut(state: State) -> dict:
            memory.flush()  # the writer holds the lease: its check runs every 0.2 s
            _end_claim_session(memory)
            deadline = time.monotonic() + 5
            while memory.claim_unbroken("thread:t1"):
                assert time.monotonic() < deadline, "the lease check never noticed"
                time.sleep(0.02)
            return {}

        builder = StateGraph(State)
        builder.add_node("first", first)
        builder.add_node("cut", cut)
        builder.add_node("second", routed_node(dispatcher, role="executor", prompt="again", budget=Budget(calls=4)))
        builder.add_edge(START, "first")
        builder.add_edge("first", "cut")
        builder.add_edge("cut", "second")
        app = ag.claiming(builder.compile(checkpointer=saver), memory)
        with pytest.raises(TaskBusyError, match="its claim was lost with its database session"):
            app.invoke({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "t1"}})
        memory.flush()
        with memory.engine.connect() as conn:
            steps = conn.execute(sa.text("SELECT count(*) FROM steps")).scalar_one()
        assert steps == 1, "only the call made before the session ended is paid and stored"
