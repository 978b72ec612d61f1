"""A task paused inside a subgraph, then abandoned by the parent thread's next input, ends ``interrupted``.

Your parent ``StateGraph`` (checkpointed) runs routed nodes in a subgraph — a compiled graph added
as a node (its checkpoints the parent's, or its own with ``checkpointer=True``), or a node that
invokes a graph — which pauses at an ``interrupt()``. The thread's next input (not a resume) makes
LangGraph drop the pending subgraph, and with it the state that named the task. Was: the task
stayed ``running`` in the memory until evicted past 4096 paused tasks, and its router never heard
that it ended. Now it ends as a paused root task does (``interrupted``, its router told once;
``done`` when a resume ran plain nodes to the graph's end first). So does a paused task that an
explicit ``new_task(...)`` in the thread's input abandons.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command

from agentroute import Dispatcher
from agentroute import graph_runtime as runtime
from agentroute.graph import new_task
from agentroute.memory import SQLMemory
from tests import test_routed_node_new_input_a231 as a231
from tests.helpers import replay_pool
from tests.test_routed_node_evicted_a221 import paused_app, question, review
from tests.test_routed_node_task_end import Recording, State, chain_with

memory, saver = a231.memory, a231.saver  # the fixtures: a SQLite memory; the parent's InMemorySaver or SqliteSaver
CFG = a231.CFG
SHAPES = ["subgraph", "subgraph_own_checkpoints", "node_invoking_a_graph"]


@pytest.fixture(autouse=True)
def own_paused_tasks(monkeypatch):
    """This module's paused and told tasks, apart from the process's."""
    monkeypatch.setattr(runtime, "_PAUSED", OrderedDict())
    monkeypatch.setattr(runtime, "_PAUSED_ON", {}, raising=False)
    monkeypatch.setattr(runtime, "_TOLD", OrderedDict())


class Plain(TypedDict, total=False):
    """A parent state without the task channel."""

    query: str
    query_id: str
    plan: str
    answer: str


def inner(dispatcher: Dispatcher, shape: str, *, last: bool = False, before: object = None):
    """planner → review → solver (``last``: review at the end) as the parent's node ``shape``;
    ``before``: a plain node that runs first."""
    builder = chain_with(dispatcher, "review", review, last=last)
    if before is not None:
        builder.add_node("before", before)
        builder.add_edge("before", "planner")
        builder.edges.discard((START, "planner"))
        builder.add_edge(START, "before")
    if shape == "subgraph":
        return builder.compile()  # its checkpoints are the parent's, under the parent task's namespace
    if shape == "subgraph_own_checkpoints":
        return builder.compile(checkpointer=True)  # kept across the parent's invocations
    compiled = builder.compile()

    def invokes(state, config):
        return compiled.invoke(state, config)

    return invokes


def parent_app(memory: SQLMemory, shape: str, saver, *, last: bool = False, state: type = State):
    """A recording router and a parent graph whose only node runs the routed subgraph."""
    router = Recording()
    builder = StateGraph(state)
    builder.add_node("sub", inner(Dispatcher(replay_pool(), router, memory=memory), shape, last=last))
    builder.add_edge(START, "sub")
    return router, builder.compile(checkpointer=saver)


def tasks_seen(router: Recording) -> list[str]:
    """The tasks the router heard steps of, first seen first."""
    return list(dict.fromkeys(task_id for task_id, _, _ in router.seen))


def status(memory: SQLMemory, task_id: str) -> str:
    memory.flush()
    return memory.get_task(task_id).task.status


def ended_by_the_new_input(memory: SQLMemory, router: Recording, want: str, last: int = 0) -> None:
    """The first task ended ``want`` (its router told once, at step ``last``); the second is paused."""
    old, new = tasks_seen(router)
    assert router.ended() == {old: [last]}  # was: {} (never told)
    assert status(memory, old) == want  # was: running, until evicted
    assert status(memory, new) == "running"


# -- sync: InMemorySaver and SqliteSaver -------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_new_input_after_a_pause_in_a_subgraph_records_the_paused_task_interrupted(memory, saver, shape):
    router, app = parent_app(memory, shape, saver)
    assert "__interrupt__" in app.invoke(question(0), CFG)
    (old,) = tasks_seen(router)
    assert (router.ended(), status(memory, old)) == ({}, "running")  # paused: no end yet
    assert "__interrupt__" in app.invoke(question(1), CFG)
    ended_by_the_new_input(memory, router, "interrupted")
    assert memory.trajectories(graph="langgraph", status=["done"]) == []


# -- async: AsyncSqliteSaver and InMemorySaver --------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ainvoke_new_input_after_a_pause_in_a_subgraph_records_the_paused_task_interrupted(
    tmp_path, memory, kind, shape
):
    async def main() -> Recording:
        async with a231.async_saver(tmp_path, kind) as opened:
            router, app = parent_app(memory, shape, opened)
            assert "__interrupt__" in await app.ainvoke(question(0), CFG)
            assert router.ended() == {}
            assert "__interrupt__" in await app.ainvoke(question(1), CFG)
            return router

    ended_by_the_new_input(memory, asyncio.run(main()), "interrupted")


# -- a parent whose state has no task channel: each subgraph invocation is its task's own ------------
def test_new_input_after_a_pause_in_a_subgraph_of_a_parent_without_the_channel_records_it_interrupted(memory, saver):
    router, app = parent_app(memory, "subgraph", saver, state=Plain)
    assert "__interrupt__" in app.invoke(question(0), CFG)
    assert router.ended() == {}
    assert "__interrupt__" in app.invoke(question(1), CFG)
    ended_by_the_new_input(memory, router, "interrupted")


def test_new_input_after_a_subgraph_resumed_through_plain_nodes_records_the_task_done(memory, saver):
    """planner → solver → review in the subgraph, approved: it reached its end before the new input
    (judged on the subgraph's own checkpoints: the parent's state never carried the task)."""
    router, app = parent_app(memory, "subgraph", saver, last=True, state=Plain)
    assert "__interrupt__" in app.invoke(question(0), CFG)
    assert app.invoke(Command(resume="approved"), CFG)["plan"] == "approved"  # plain nodes only
    assert router.ended() == {}
    assert "__interrupt__" in app.invoke(question(1), CFG)
    ended_by_the_new_input(memory, router, "done", last=1)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ainvoke_new_input_after_a_subgraph_resumed_through_plain_nodes_records_the_task_done(tmp_path, memory, kind):
    async def main() -> Recording:
        async with a231.async_saver(tmp_path, kind) as opened:
            router, app = parent_app(memory, "subgraph", opened, last=True, state=Plain)
            assert "__interrupt__" in await app.ainvoke(question(0), CFG)
            assert (await app.ainvoke(Command(resume="approved"), CFG))["plan"] == "approved"
            assert "__interrupt__" in await app.ainvoke(question(1), CFG)
            return router

    ended_by_the_new_input(memory, asyncio.run(main()), "done", last=1)


def test_a_parallel_subgraph_s_pause_in_the_same_invocation_is_no_abandoned_task(memory):
    """Two subgraphs of one superstep each open a task (the parent has no channel): the first pauses
    before the second opens its task, in the same invocation, and stays paused; the next input
    ends both."""
    router = Recording()
    dispatcher = Dispatcher(replay_pool(), router, memory=memory)

    def slow(state):
        time.sleep(0.5)  # the other branch's subgraph pauses meanwhile
        return {}

    builder = StateGraph(Plain)
    builder.add_node("a", inner(dispatcher, "subgraph"))
    builder.add_node("b", inner(dispatcher, "subgraph", before=slow))
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    app = builder.compile(checkpointer=InMemorySaver())
    assert "__interrupt__" in app.invoke(question(0), CFG)
    first = tasks_seen(router)
    assert len(first) == 2 and router.ended() == {}
    assert [status(memory, task_id) for task_id in first] == ["running", "running"]  # both paused
    app.invoke(question(1), CFG)
    assert {t: router.ended().get(t) for t in first} == {t: [0] for t in first}  # was: never told
    assert [status(memory, task_id) for task_id in first] == ["interrupted", "interrupted"]


# -- the root graph: an explicit new_task(...) in the input ----------------------------------------
def test_new_task_in_the_input_after_a_pause_records_the_paused_task_interrupted(memory, saver):
    """Another graph's thread of the same name (its own saver) keeps its paused task."""
    router, app = paused_app(memory, checkpointer=saver)
    other_router, other = paused_app(memory)  # an InMemorySaver of its own
    assert "__interrupt__" in other.invoke(question(2), CFG)
    assert "__interrupt__" in app.invoke(question(0), CFG)
    assert "__interrupt__" in app.invoke({**question(1), "agentroute": new_task()}, CFG)
    ended_by_the_new_input(memory, router, "interrupted")  # was: running, never told
    (kept,) = tasks_seen(other_router)
    assert (other_router.ended(), status(memory, kept)) == ({}, "running")


@pytest.mark.postgres
def test_new_input_after_a_pause_in_a_subgraph_under_a_postgres_saver_records_it_interrupted(checkpoint_db, memory):
    from langgraph.checkpoint.postgres import PostgresSaver

    from tests.fixtures_postgres import saver_url

    with PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as postgres:
        postgres.setup()
        router, app = parent_app(memory, "subgraph", postgres)
        assert "__interrupt__" in app.invoke(question(0), CFG)
        assert "__interrupt__" in app.invoke(question(1), CFG)
    ended_by_the_new_input(memory, router, "interrupted")
