"""Where a task of your own ``StateGraph`` ends, on the paths beside the common one.

Without a checkpointer nothing can resume an invocation, so however it stops — the recursion limit,
an ``interrupt()`` or ``interrupt_before`` pause — its task ended there (was: kept as paused, the
router never told). Two dispatchers in one graph share the task: each router is told it ended
(was: only the last dispatcher to run a node).
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.func import entrypoint
from langgraph.graph import START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict

from agentroute import Dispatcher, routed_node
from agentroute import graph_runtime as runtime
from tests.helpers import replay_pool
from tests.test_routed_node_task_end import Recording, State, chain, ended_once


def looping(dispatcher: Dispatcher):
    """planner → a plain node looping on itself: only the recursion limit stops it."""
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(dispatcher, role="planner", prompt="Plan.", output_key="plan"))
    builder.add_node("again", lambda state: {})
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "again")
    builder.add_edge("again", "again")
    return builder.compile()


def not_paused(router: Recording) -> None:
    assert not {task_id for task_id, _, _ in router.seen} & set(runtime._PAUSED), "kept as paused"


def test_the_recursion_limit_without_a_checkpointer_ends_the_task():
    router = Recording()
    app = looping(Dispatcher(replay_pool(), router))
    with pytest.raises(GraphRecursionError):
        app.invoke({"query": "question 0", "query_id": "q0"}, {"recursion_limit": 5})
    with pytest.raises(GraphRecursionError):
        asyncio.run(app.ainvoke({"query": "question 1", "query_id": "q1"}, {"recursion_limit": 5}))
    ended_once(router, 2, last=0)  # was: no task ended
    not_paused(router)


def test_a_pause_without_a_checkpointer_ends_the_task():
    """Nothing can resume it: ``interrupt_before`` and ``interrupt()`` end the task there."""
    router = Recording()
    dispatcher = Dispatcher(replay_pool(), router)
    assert "answer" not in chain(dispatcher, interrupt_before=["solver"]).invoke(
        {"query": "question 0", "query_id": "q0"}
    )
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(dispatcher, role="planner", prompt="Plan.", output_key="plan"))
    builder.add_node("review", lambda state: {"plan": interrupt("approve?")})
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "review")
    assert "__interrupt__" in builder.compile().invoke({"query": "question 1", "query_id": "q1"})
    ended_once(router, 2, last=0)  # was: no task ended
    not_paused(router)


def two_dispatchers(planning: Dispatcher, solving: Dispatcher, **compile_kwargs):
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(planning, role="planner", prompt="Plan.", output_key="plan"))
    builder.add_node("solver", routed_node(solving, role="executor", prompt="Solve.", input_key="plan"))
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "solver")
    return builder.compile(**compile_kwargs)


def test_two_dispatchers_in_one_graph_each_tell_their_router_once():
    planning, solving = Recording(), Recording()
    app = two_dispatchers(Dispatcher(replay_pool(), planning), Dispatcher(replay_pool(), solving))
    app.invoke({"query": "question 0", "query_id": "q0"})
    ended_once(solving, 1)
    ended_once(planning, 1)  # was: not told (the solver's dispatcher replaced it)


def test_two_dispatchers_across_a_pause_each_tell_their_router_once():
    """The planner's dispatcher ran before the pause only: the resume still ends its task."""
    planning, solving = Recording(), Recording()
    app = two_dispatchers(
        Dispatcher(replay_pool(), planning), Dispatcher(replay_pool(), solving),
        checkpointer=InMemorySaver(), interrupt_before=["solver"],
    )  # fmt: skip
    cfg = {"configurable": {"thread_id": "two"}}
    app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
    assert planning.ended() == {} and solving.ended() == {}
    assert app.invoke(None, cfg)["answer"]
    ended_once(solving, 1)
    ended_once(planning, 1)  # was: not told (the resume dropped the paused entry)
    not_paused(planning)


# -- a graph invoked from code that cannot carry its task ------------------------------------------
def test_graphs_invoked_by_an_entrypoint_loop_each_end_with_their_own_invocation():
    """A functional-API driver invoking your graph per question: each task ends as its graph returns
    (was: all held until the driver's end — the router learned nothing meanwhile, memory grew)."""
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router))
    told: list[int] = []

    @entrypoint()
    def driver(n: int) -> int:
        for i in range(n):
            app.invoke({"query": f"question {i}", "query_id": f"q{i}"})
            told.append(len(router.ended()))
        return n

    driver.invoke(3)
    assert told == [1, 2, 3]  # was: [0, 0, 0]
    ended_once(router, 3)


def test_a_graph_invoked_from_a_tool_of_an_agent_ends_with_its_own_invocation():
    """A node of an outer graph whose state has no task channel (an agent calling a tool that runs
    your graph): the task cannot go on in it, so it ends when your graph's invocation returns."""

    class Outer(TypedDict):
        questions: list[str]
        told: list[int]

    router = Recording()
    app = chain(Dispatcher(replay_pool(), router))

    def tool_calls(state: Outer) -> dict[str, list[int]]:
        told = []
        for i, question in enumerate(state["questions"]):
            app.invoke({"query": question, "query_id": f"q{i}"})
            told.append(len(router.ended()))
        return {"told": told}

    outer = StateGraph(Outer)
    outer.add_node("tools", tool_calls)
    outer.add_edge(START, "tools")
    told = outer.compile().invoke({"questions": ["question 0", "question 1"]})["told"]
    assert told == [1, 2]  # was: [0, 0]
    ended_once(router, 2)
