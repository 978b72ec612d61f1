"""A paused task evicted past the cap on paused tasks is recorded ``interrupted`` when it stopped mid-graph.

Past :data:`agentroute.graph_runtime._PAUSED_LIMIT` paused tasks the oldest ends (its router told,
once). Was: its row said ``done`` although its graph never went past the ``interrupt()``, so
``trajectories(status=["done"])`` — what a router trains on — fed it the half task as a whole one.
A task whose resume ran only plain nodes (its graph finished) still ends as it was recorded.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command, interrupt

from agentroute import Dispatcher
from agentroute import graph_runtime as runtime
from tests import test_routed_node_task_end as base
from tests.helpers import replay_pool
from tests.test_routed_node_task_end import Recording, chain_with

memory = base.memory  # the common path's SQLite memory fixture


@pytest.fixture(autouse=True)
def one_paused_task(monkeypatch):
    """This module's paused and told tasks, apart from the process's; a second pause evicts the first."""
    monkeypatch.setattr(runtime, "_PAUSED", OrderedDict())
    monkeypatch.setattr(runtime, "_TOLD", OrderedDict())
    monkeypatch.setattr(runtime, "_PAUSED_LIMIT", 1)


def review(state):
    """A human approves the plan (or, placed last, the answer)."""
    return {"plan": interrupt({"plan": state["plan"]})}


def question(i: int) -> dict[str, str]:
    return {"query": f"question {i}", "query_id": f"q{i}"}


THREADS = ({"configurable": {"thread_id": "t0"}}, {"configurable": {"thread_id": "t1"}})


def paused_app(memory, *, last: bool = False, checkpointer=None):
    """A recording router and planner → review → solver (review last: ``last``) on ``memory``,
    compiled with ``checkpointer`` (default an ``InMemorySaver``)."""
    router = Recording()
    graph = chain_with(Dispatcher(replay_pool(), router, memory=memory), "review", review, last=last)
    return router, graph.compile(checkpointer=checkpointer or InMemorySaver())


def halted(memory, router: Recording, first: str, second: str) -> None:
    """``first`` was evicted unfinished: recorded interrupted, told ended once; ``second`` paused."""
    assert router.ended() == {first: [0]}  # the planner's step; the solver never ran
    memory.flush()
    assert memory.get_task(first).task.status == "interrupted"  # was: done
    assert memory.get_task(second).task.status == "running"  # paused, not evicted: not finished (was: done)
    assert memory.trajectories(graph="langgraph", status=["done"]) == []
    by_id = {t.task.id: t.task.status for t in memory.trajectories(graph="langgraph")}
    assert by_id[first] == "interrupted"  # the default filter lists it, as a stopped task


def test_an_interrupted_task_evicted_unanswered_is_recorded_interrupted(tmp_path, memory):
    router = Recording()
    with SqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
        app = chain_with(Dispatcher(replay_pool(), router, memory=memory), "review", review).compile(
            checkpointer=saver
        )
        first, second = ({"configurable": {"thread_id": f"t{i}"}} for i in range(2))
        assert "__interrupt__" in app.invoke(question(0), first)
        assert "__interrupt__" in app.invoke(question(1), second)
        halted(memory, router, app.get_state(first).values["agentroute_task_id"],
               app.get_state(second).values["agentroute_task_id"])  # fmt: skip
        assert app.get_state(first).next == ("review",)  # still resumable: it stopped mid-graph


def test_ainvoke_under_an_async_checkpointer_records_the_evicted_task_interrupted(tmp_path, memory):
    router = Recording()

    async def main() -> tuple[str, str]:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            app = chain_with(Dispatcher(replay_pool(), router, memory=memory), "review", review).compile(
                checkpointer=saver
            )
            configs = [{"configurable": {"thread_id": f"t{i}"}} for i in range(2)]
            for i, cfg in enumerate(configs):
                assert "__interrupt__" in await app.ainvoke(question(i), cfg)
            return tuple([(await app.aget_state(cfg)).values["agentroute_task_id"] for cfg in configs])  # type: ignore[return-value]

    halted(memory, router, *asyncio.run(main()))


def test_a_task_resumed_through_plain_nodes_then_evicted_stays_done(memory):
    """Its graph finished (planner → solver → review, approved): evicted, it ends as recorded."""
    router, app = paused_app(memory, last=True)
    first, second = THREADS
    assert "__interrupt__" in app.invoke(question(0), first)
    assert app.invoke(Command(resume="approved"), first)["plan"] == "approved"  # no routed node ran
    assert router.ended() == {}
    assert "__interrupt__" in app.invoke(question(1), second)
    done = app.get_state(first).values["agentroute_task_id"]
    assert router.ended() == {done: [1]}
    memory.flush()
    assert memory.get_task(done).task.status == "done"


def test_a_task_whose_state_was_only_updated_then_evicted_is_recorded_interrupted(memory):
    """``update_state`` writes a checkpoint but runs no step: the graph is still where it paused."""
    router, app = paused_app(memory)
    first, second = THREADS
    assert "__interrupt__" in app.invoke(question(0), first)
    app.update_state(first, {"plan": "an edited plan"})
    assert "__interrupt__" in app.invoke(question(1), second)
    halted(memory, router, app.get_state(first).values["agentroute_task_id"],
           app.get_state(second).values["agentroute_task_id"])  # fmt: skip


def test_an_evicted_task_resumed_later_ends_done_without_a_second_end(memory):
    """The resume runs the solver: the record is brought up to date (done, both steps); told once."""
    router, app = paused_app(memory)
    first, second = THREADS
    assert "__interrupt__" in app.invoke(question(0), first)
    assert "__interrupt__" in app.invoke(question(1), second)
    task_id = app.get_state(first).values["agentroute_task_id"]
    memory.flush()
    assert memory.get_task(task_id).task.status == "interrupted"
    assert app.invoke(Command(resume="approved"), first)["answer"]
    assert router.ended() == {task_id: [0]}
    memory.flush()
    record = memory.get_task(task_id)
    assert (record.task.status, len(record.steps)) == ("done", 2)


def test_under_an_async_checkpointer_a_task_resumed_through_plain_nodes_then_evicted_stays_done(
    tmp_path, memory
):
    router = Recording()

    async def main() -> str:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            dispatcher = Dispatcher(replay_pool(), router, memory=memory)
            app = chain_with(dispatcher, "review", review, last=True).compile(checkpointer=saver)
            first, second = ({"configurable": {"thread_id": f"t{i}"}} for i in range(2))
            assert "__interrupt__" in await app.ainvoke(question(0), first)
            assert (await app.ainvoke(Command(resume="approved"), first))["plan"] == "approved"
            assert "__interrupt__" in await app.ainvoke(question(1), second)
            return (await app.aget_state(first)).values["agentroute_task_id"]

    done = asyncio.run(main())
    assert router.ended() == {done: [1]}
    memory.flush()
    assert memory.get_task(done).task.status == "done"
