"""A routed node's task that its invocation ends leaves no run in the process's registry.

The routed nodes release their run before the invocation ends, and the task ends at the root
loop's exit: the finished run stayed in :data:`agentroute.dispatch.run.LIVE` (an idle run, kept
until 4096 more pushed it out), one per invocation: a server kept thousands of finished runs, their
steps and answers, and ``tests/test_langgraph_citizenship.py``'s ``len(LIVE) < 100`` failed when
it ran after the routed-node modules (196 runs). A paused task's run stays: its resume goes on in it.
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from agentroute import Dispatcher, make_router, routed_node
from agentroute.dispatch.run import LIVE
from agentroute.graph import AgentrouteState
from tests.helpers import replay_pool


class State(AgentrouteState, total=False):
    query: str
    query_id: str
    draft: str
    answer: str


def app(*, saver=None, pause: bool = False, memory=None):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="draft", output_key="draft"))
    builder.add_node("ask", lambda s: {"answer": interrupt("ok?") if pause else s["draft"]})
    builder.add_node(
        "polish",
        routed_node(dispatcher, role="refiner", prompt="polish", input_key="draft", output_key="answer"),
    )
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "ask")
    builder.add_edge("ask", "polish")
    builder.add_edge("polish", END)
    return builder.compile(checkpointer=saver)


@pytest.mark.parametrize("saver", [None, "memory"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_task_its_invocation_ended_leaves_no_run_in_the_registry(mode, saver):
    graph = app(saver=InMemorySaver() if saver else None)
    ids = []
    for i in range(3):
        config = {"configurable": {"thread_id": f"live-{mode}-{i}"}}
        inp = {"query": f"question {i}", "query_id": f"q{i}"}
        out = graph.invoke(inp, config) if mode == "sync" else asyncio.run(graph.ainvoke(inp, config))
        assert out["draft"] == f"small says {i}" and out["answer"] == f"small says {i}"
        ids.append(out["agentroute"]["task_id"])
    assert [LIVE.get(task_id) for task_id in ids] == [None, None, None]


def test_a_paused_tasks_run_stays_until_its_resume_ends_it():
    graph = app(saver=InMemorySaver(), pause=True)
    config = {"configurable": {"thread_id": "live-paused"}}
    graph.invoke({"query": "question", "query_id": "q2"}, config)
    task_id = graph.get_state(config).values["agentroute"]["task_id"]
    assert LIVE.get(task_id) is not None and not LIVE.get(task_id).finished
    out = graph.invoke(Command(resume="yes"), config)
    assert out["agentroute"]["task_id"] == task_id and out["answer"] == "small says 2"
    assert LIVE.get(task_id) is None
