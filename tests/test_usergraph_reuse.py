"""Which routed calls a node re-executed after its ``interrupt()`` takes back, and which it pays.

LangGraph runs an interrupted node again from its start. A routed call that node made *before* an
interrupt it has had answered is a replay: it takes back the very step it paid for then. A call
*after* that point is new work the node asks for (a regenerated draft, a branch that asked first and
then calls), and is paid.
"""

from __future__ import annotations

import operator
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt

import agentroute
import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.dispatch.run import LIVE
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool

ROOT = Path(agentroute.__file__).resolve().parents[1]


class State(ag.AgentrouteState):
    query: str
    query_id: str
    answer: str
    answers: Annotated[list[str], operator.add]


class Chat(ag.AgentrouteState):
    messages: Annotated[list, add_messages]
    query_id: str
    drafts: list[str]
    picked: str


@pytest.fixture
def memory(tmp_path):
    store = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    yield store
    store.close()


def _steps(memory: SQLMemory) -> list[tuple[int, str]]:
    memory.flush()
    (task,) = memory.trajectories(graph="langgraph", status=None)
    return [(s.index, s.stage) for s in task.steps]


def test_a_draft_regenerated_after_the_review_is_paid_again(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    draft = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=5))

    def write_until_approved(state, config):
        update = draft.invoke(state, config)
        while interrupt({"draft": update["answer"]}) == "redo":  # the human asks for another draft
            update = draft.invoke(state, config)
        return update

    builder = StateGraph(State)
    builder.add_node("write", write_until_approved)
    builder.add_edge(START, "write")
    app, cfg = builder.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "redo"}}
    app.invoke({"query": "q1", "query_id": "q1"}, cfg)
    again = app.invoke(Command(resume="redo"), cfg)
    assert "__interrupt__" in again  # the second draft, waiting for its review
    done = app.invoke(Command(resume="ok"), cfg)
    # was: the regenerated draft was the first one taken back (paid once, shown twice, never redone)
    assert done["agentroute"]["ledger"]["spent"][2] == 2
    assert _steps(memory) == [(0, "executor"), (1, "executor")]


@pytest.mark.parametrize("new_process", [False, True], ids=["same-process", "run-rebuilt"])
def test_samples_drawn_before_a_choice_are_each_taken_back_in_order(memory, new_process):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    draft = routed_node(dispatcher, role="writer", prompt="w", input_key="messages", output_key="messages",
                        budget=Budget(calls=4))

    def three_then_pick(state, config):
        updates = [draft.invoke(state, config) for _ in range(3)]  # the same input, on purpose
        drafts = [u["messages"][0].id for u in updates]
        picked = interrupt({"drafts": drafts})
        return {"drafts": drafts, "picked": drafts[picked], "agentroute": updates[-1]["agentroute"]}

    builder = StateGraph(Chat)
    builder.add_node("pick", three_then_pick)
    builder.add_edge(START, "pick")
    app, cfg = builder.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "pick"}}
    paused = app.invoke({"messages": [HumanMessage("q1")], "query_id": "q1"}, cfg)
    shown = paused["__interrupt__"][0].value["drafts"]
    assert len(set(shown)) == 3
    if new_process:
        for task_id in list(LIVE._runs):
            LIVE.drop(task_id)
    done = app.invoke(Command(resume=0), cfg)
    # was: each replayed call took the latest step back — three copies of the third draft, the
    # human's pick (the first) resolved to the third
    assert done["drafts"] == shown and done["picked"] == shown[0]
    assert done["agentroute"]["ledger"]["spent"][2] == 3
    assert len(_steps(memory)) == 3


def test_a_branch_that_asks_first_pays_its_own_call_not_its_twin_s(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    call = routed_node(dispatcher, role="executor", prompt="e", output=lambda text: {"answers": [text]},
                       budget=Budget(calls=4))

    def branch(payload, config):
        if payload["ask"]:
            interrupt("may I call the model?")  # asked before its call: it had paid nothing
        return call.invoke(payload, config)

    builder = StateGraph(State)
    builder.add_node("branch", branch)
    builder.add_conditional_edges(START, lambda s: [Send("branch", {"query": s["query"], "query_id": s["query_id"], "ask": a})
                                                    for a in (False, True)], ["branch"])
    app, cfg = builder.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "twins"}}
    app.invoke({"query": "q1", "query_id": "q1"}, cfg)
    done = app.invoke(Command(resume="yes"), cfg)
    # was: the branch took its twin's step (same stage, same input) and paid nothing for its own call
    assert done["agentroute"]["ledger"]["spent"][2] == 2
    assert len(done["answers"]) == 2
    assert _steps(memory) == [(0, "executor"), (1, "executor")]


def test_twin_branches_that_each_paid_then_paused_take_back_their_own_steps(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    call = routed_node(dispatcher, role="writer", prompt="w", input_key="messages", output_key="messages",
                       budget=Budget(calls=4))

    def branch(payload, config):
        update = call.invoke(payload, config)
        mine = update["messages"][0].id
        interrupt({"draft": mine})
        return {"drafts": [mine], "agentroute": update["agentroute"]}

    class Drafts(Chat):
        drafts: Annotated[list[str], operator.add]

    builder = StateGraph(Drafts)
    builder.add_node("branch", branch)
    builder.add_conditional_edges(START, lambda s: [Send("branch", {"messages": s["messages"], "query_id": "q1"})] * 2, ["branch"])
    app, cfg = builder.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "pair"}}
    paused = app.invoke({"messages": [HumanMessage("q1")], "query_id": "q1"}, cfg)
    asked = {i.id: i.value["draft"] for i in paused["__interrupt__"]}
    assert len(set(asked.values())) == 2
    done = app.invoke(Command(resume={i: "ok" for i in asked}), cfg)
    # was: both branches took the latest step back: one draft twice, the other lost
    assert sorted(done["drafts"]) == sorted(asked.values())
    assert done["agentroute"]["ledger"]["spent"][2] == 2


RESUMER = """
import json, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool
from tests.test_usergraph_reuse import State
memory_url, saver_path, resume = sys.argv[1:4]
memory = SQLMemory(memory_url)
dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
draft = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=5))

def write_until_approved(state, config):
    update = draft.invoke(state, config)
    while interrupt({"draft": update["answer"]}) == "redo":
        update = draft.invoke(state, config)
    return update

builder = StateGraph(State)
builder.add_node("write", write_until_approved)
builder.add_edge(START, "write")
with SqliteSaver.from_conn_string(saver_path) as saver:
    app, cfg = builder.compile(checkpointer=saver), {"configurable": {"thread_id": "redo"}}
    out = app.invoke({"query": "q1", "query_id": "q1"} if resume == "-" else Command(resume=resume), cfg)
    print(json.dumps({"paused": "__interrupt__" in out}))
memory.close()
"""


def test_a_redo_answered_in_another_process_is_paid_and_the_reviewed_draft_is_not(tmp_path):
    memory_url, saver_path = f"sqlite:///{tmp_path}/memory.db", str(tmp_path / "checkpoints.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for resume in ("-", "redo", "redo", "ok"):  # each answer in a process of its own
        done = subprocess.run([sys.executable, "-c", RESUMER, memory_url, saver_path, resume], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    with SQLMemory(memory_url) as memory:
        # was: one step for three drafts (each redo took the first draft back)
        assert _steps(memory) == [(0, "executor"), (1, "executor"), (2, "executor")]


def test_a_redraft_inside_a_subgraph_is_paid_and_the_reviewed_draft_is_not(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    draft = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=3))

    def write_until_approved(state, config):
        update = draft.invoke(state, config)
        while interrupt(update["answer"]) == "redo":  # answered through the parent's Command(resume=…)
            update = draft.invoke(state, config)
        return update

    inner = StateGraph(State)
    inner.add_node("write", write_until_approved)
    inner.add_edge(START, "write")
    outer = StateGraph(State)
    outer.add_node("team", inner.compile())
    outer.add_edge(START, "team")
    app, cfg = outer.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "nested"}}
    app.invoke({"query": "q1", "query_id": "q1"}, cfg)
    assert "__interrupt__" in app.invoke(Command(resume="redo"), cfg)
    done = app.invoke(Command(resume="ok"), cfg)
    # was: the redraft was the first draft taken back (one call for two drafts)
    assert done["answer"] == "small says 1" and done["agentroute"]["ledger"]["spent"][2] == 2
    assert _steps(memory) == [(0, "executor"), (1, "executor")]
