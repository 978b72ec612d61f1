"""``update_state`` on a claimed graph (``claiming(app, memory)``) holds the thread's claim: a
human's edit between two runs (after a HITL interrupt) is refused with ``TaskBusyError`` while a
worker runs the thread — another process's worker or another invocation of this one — and goes
through, giving the claim back, once the thread is free.

Real PostgreSQL server on loopback, real savers; ``other`` is a second memory (another worker's
session) that holds or tries the thread's claim.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agentroute import Budget, make_router
from agentroute.memory import SQLMemory, TaskBusyError
from tests.fixtures_claimed_graph import State, claimable, claimed_app
from tests.fixtures_postgres import saver_url
from tests.helpers import replay_pool

pytestmark = pytest.mark.postgres


def test_update_state_is_refused_while_another_worker_holds_the_thread(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.types import StateUpdate

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver)
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
        assert claimable(other, "thread:edited")  # and its claim went back


def test_update_state_is_refused_while_this_process_runs_the_thread(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    running, go = threading.Event(), threading.Event()

    def slow_tool(state: State) -> dict:
        running.set()
        go.wait(30)
        return {"note": "tool"}

    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, after=slow_tool)
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


def test_aupdate_state_holds_and_gives_back_the_claim(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> tuple[Any, bool]:
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            app = claimed_app(memory, saver)
            cfg = {"configurable": {"thread_id": "async-edit"}}
            await app.ainvoke({"query": "q1", "query_id": "q1"}, cfg)
            await app.aupdate_state(cfg, {"answer": "edited"})
            free = claimable(other, "thread:async-edit")  # at once, without yielding to the event loop
            return (await app.aget_state(cfg)).values["answer"], free

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        assert asyncio.run(main(memory, other)) == ("edited", True)


def test_an_agent_graph_s_update_state_is_refused_while_another_worker_runs_its_task(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.types import interrupt

    from agentroute import AgentGraph

    def approve(state, ctx):
        interrupt("ok?")
        return {}

    graph = (AgentGraph("reviewed").add_role("planner", prompt="plan").add_node("approve", approve)
             .add_role("executor", prompt="do").add_edge("planner", "approve").add_edge("approve", "executor"))
    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
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
