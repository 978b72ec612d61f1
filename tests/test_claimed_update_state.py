"""``update_state`` on a claimed graph (``claiming(app, memory)``) holds the thread's claim: a
human's edit between two runs (after a HITL interrupt) is refused with ``TaskBusyError`` while a
worker runs the thread — another process's worker or another invocation of this one — and goes
through, giving the claim back, once the thread is free.

Real PostgreSQL server on loopback, real savers; ``other`` is a second memory (another worker's
session) that holds or tries the thread's claim.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory, TaskBusyError
from tests.helpers import replay_pool

pytestmark = pytest.mark.postgres


class State(ag.AgentrouteState, total=False):
    query: str
    query_id: str
    answer: str
    note: str


@pytest.fixture
def db(postgres_url: str) -> str:
    from agentroute.memory.pgserver import create_database

    pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
    return create_database(postgres_url, f"updstate_{os.getpid()}_{time.monotonic_ns()}")


def _saver_url(db: str) -> str:
    return db.replace("postgresql+psycopg://", "postgresql://")


def _app(memory: SQLMemory, saver: Any, after: Any = None) -> Any:
    from langgraph.graph import START, StateGraph

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("answer", routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=4)))
    builder.add_edge(START, "answer")
    if after is not None:
        builder.add_node("after", after)
        builder.add_edge("answer", "after")
    return ag.claiming(builder.compile(checkpointer=saver), memory)


def _free_now(other: SQLMemory, thread: str) -> bool:
    if other.claim_task(f"thread:{thread}"):
        other.release_task(f"thread:{thread}")
        return True
    return False


def test_update_state_is_refused_while_another_worker_holds_the_thread(db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.types import StateUpdate

    with SQLMemory(db) as memory, SQLMemory(db) as other, PostgresSaver.from_conn_string(_saver_url(db)) as saver:
        saver.setup()
        app = _app(memory, saver)
        cfg = {"configurable": {"thread_id": "edited"}}
        app.invoke({"query": "q1", "query_id": "q1"}, cfg)
        assert other.claim_task("thread:edited")
        try:
            for edit in (lambda: app.update_state(cfg, {"note": "by hand"}),
                         lambda: app.bulk_update_state(cfg, [[StateUpdate({"note": "by hand"}, None)]]),
                         lambda: asyncio.run(app.aupdate_state(cfg, {"note": "by hand"}))):
                # was: written at once, under the other worker's running invocation
                with pytest.raises(TaskBusyError, match="thread 'edited' is being run by another worker"):
                    edit()
        finally:
            other.release_task("thread:edited")
        assert "note" not in app.get_state(cfg).values
        app.update_state(cfg, {"note": "by hand"})  # the thread is free: the edit goes through
        assert app.get_state(cfg).values["note"] == "by hand"
        assert _free_now(other, "edited")  # and its claim went back


def test_update_state_is_refused_while_this_process_runs_the_thread(db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    running, go = threading.Event(), threading.Event()

    def slow_tool(state: State) -> dict:
        running.set()
        go.wait(30)
        return {"note": "tool"}

    with SQLMemory(db) as memory, PostgresSaver.from_conn_string(_saver_url(db)) as saver:
        saver.setup()
        app = _app(memory, saver, after=slow_tool)
        cfg = {"configurable": {"thread_id": "busy"}}
        worker = threading.Thread(target=app.invoke, args=({"query": "q1", "query_id": "q1"}, cfg))
        worker.start()
        try:
            assert running.wait(30)
            with pytest.raises(TaskBusyError):  # was: written while the invocation ran on: its next checkpoint forked it
                app.update_state(cfg, {"answer": "edited"})
        finally:
            go.set()
            worker.join(30)
        assert app.get_state(cfg).values["note"] == "tool"
        app.update_state(cfg, {"answer": "edited"})
        assert app.get_state(cfg).values["answer"] == "edited"


def test_aupdate_state_holds_and_gives_back_the_claim(db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> tuple[Any, bool]:
        async with AsyncPostgresSaver.from_conn_string(_saver_url(db)) as saver:
            await saver.setup()
            app = _app(memory, saver)
            cfg = {"configurable": {"thread_id": "async-edit"}}
            await app.ainvoke({"query": "q1", "query_id": "q1"}, cfg)
            await app.aupdate_state(cfg, {"answer": "edited"})
            free = _free_now(other, "async-edit")  # at once, without yielding to the event loop
            return (await app.aget_state(cfg)).values["answer"], free

    with SQLMemory(db) as memory, SQLMemory(db) as other:
        assert asyncio.run(main(memory, other)) == ("edited", True)


def test_an_agent_graph_s_update_state_is_refused_while_another_worker_runs_its_task(db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.types import interrupt

    from agentroute import AgentGraph

    def approve(state, ctx):
        interrupt("ok?")
        return {}

    graph = (AgentGraph("reviewed").add_role("planner", prompt="plan").add_node("approve", approve)
             .add_role("executor", prompt="do").add_edge("planner", "approve").add_edge("approve", "executor"))
    with SQLMemory(db) as memory, SQLMemory(db) as other, PostgresSaver.from_conn_string(_saver_url(db)) as saver:
        saver.setup()
        app = graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=5),
                            checkpointer=saver)
        cfg = {"configurable": {"thread_id": "agent-edit"}}
        app.run("q1", query_id="q1", config=cfg, task_id="t-edit")  # paused at the review
        assert other.claim_task("t-edit")  # another worker resumes the task
        try:
            with pytest.raises(TaskBusyError, match="task t-edit is being run by another worker"):
                app.update_state(cfg, {"outputs": {"planner": "edited"}})  # was: written under its run
        finally:
            other.release_task("t-edit")
        assert app.get_state(cfg).values["outputs"]["planner"] != "edited"
        app.update_state(cfg, {"outputs": {"planner": "edited"}})
        assert app.get_state(cfg).values["outputs"]["planner"] == "edited"
        assert other.claim_task("t-edit")  # given back after the edit
        other.release_task("t-edit")
