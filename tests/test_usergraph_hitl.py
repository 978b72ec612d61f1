"""Human in the loop around routed nodes of YOUR StateGraph: ``interrupt()`` / ``Command(resume=…)``.

LangGraph re-executes an interrupted node from its start when the thread is resumed; a routed step
that node ran before its ``interrupt()`` was paid already and must not be paid again.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt

import agentroute
import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool

ROOT = Path(agentroute.__file__).resolve().parents[1]


class State(ag.AgentrouteState):
    query: str
    query_id: str
    plan: str
    answer: str


@pytest.fixture
def memory(tmp_path):
    store = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    yield store
    store.close()


def _recorded(memory: SQLMemory, task_id: str) -> list[tuple[int, str]]:
    memory.flush()
    return [(s.index, s.stage) for s in memory.get_task(task_id).steps]


def _review(text: str) -> dict[str, str]:
    verdict = interrupt({"draft": text})  # a human reads the routed answer before it is written
    return {"answer": text if verdict == "ok" else verdict}


def test_a_routed_answer_a_human_reviews_with_interrupt_is_paid_once(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="e", output=_review, budget=Budget(calls=1)))
    builder.add_edge(START, "draft")
    app, cfg = builder.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "review"}}
    paused = app.invoke({"query": "q1", "query_id": "q1"}, cfg)
    assert paused["__interrupt__"][0].value == {"draft": "small says 1"}
    done = app.invoke(Command(resume="ok"), cfg)
    # was: the resumed node paid again — refused by the 1-call budget, so the reviewed answer was lost
    assert done["answer"] == "small says 1"
    assert done["agentroute"]["ledger"]["spent"][2] == 1
    assert _recorded(memory, done["agentroute"]["task_id"]) == [(0, "executor")]


def test_your_node_that_runs_a_routed_step_then_interrupts_pays_it_once_async(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    draft = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=3))

    async def draft_then_ask(state, config):
        update = await draft.ainvoke(state, config)
        edited = interrupt({"draft": update["answer"]})
        return {**update, "answer": edited}

    builder = StateGraph(State)
    builder.add_node("draft", draft_then_ask)
    builder.add_edge(START, "draft")
    app, cfg = builder.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "own-node"}}

    async def main():
        await app.ainvoke({"query": "q3", "query_id": "q3"}, cfg)
        return await app.ainvoke(Command(resume="edited by a human"), cfg)

    done = asyncio.run(main())
    assert done["answer"] == "edited by a human"
    # was: 2 calls and 2 recorded steps for one answer
    assert done["agentroute"]["ledger"]["spent"][2] == 1
    assert _recorded(memory, done["agentroute"]["task_id"]) == [(0, "executor")]


RESUMER = """
import json, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool
from tests.test_usergraph_hitl import State, _review
memory_url, saver_path, mode, planner = sys.argv[1:5]
memory = SQLMemory(memory_url)
dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
builder = StateGraph(State)
builder.add_node("executor", routed_node(dispatcher, role="executor", prompt="e", input=lambda s: s["query"], output=_review,
                                         budget=Budget(calls=2 if planner == "yes" else 1)))
if planner == "yes":
    builder.add_node("planner", routed_node(dispatcher, role="planner", prompt="p", output_key="plan", budget=Budget(calls=2)))
    builder.add_edge(START, "planner"); builder.add_edge("planner", "executor")
else:  # the reviewed node opens the task: the checkpoint it paused at holds none yet
    builder.add_edge(START, "executor")
with SqliteSaver.from_conn_string(saver_path) as saver:
    app, cfg = builder.compile(checkpointer=saver), {"configurable": {"thread_id": "across"}}
    out = app.invoke({"query": "q5", "query_id": "q5"} if mode == "start" else Command(resume="ok"), cfg)
    channel = out.get("agentroute") or {}  # empty while the task's first node is paused
    print(json.dumps({"paused": "__interrupt__" in out, "answer": out.get("answer"),
                      "calls": channel["ledger"]["spent"][2] if channel else 0, "task": channel.get("task_id")}))
memory.close()
"""


@pytest.mark.parametrize("planner", [True, False], ids=["after-a-routed-planner", "the-task-s-first-node"])
def test_a_review_answered_in_another_process_pays_the_reviewed_step_once(tmp_path, planner):
    memory_url, saver_path = f"sqlite:///{tmp_path}/memory.db", str(tmp_path / "checkpoints.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    flag = "yes" if planner else "no"

    def worker(mode: str) -> dict:
        done = subprocess.run([sys.executable, "-c", RESUMER, memory_url, saver_path, mode, flag], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = worker("start")
    assert first["paused"] and first["calls"] == (1 if planner else 0)  # the executor's step paused unsaved
    second = worker("resume")
    # was: the executor paid again in the new process — refused by the budget, so no answer; and
    # when it was the task's first node, the resume opened a second task (the first one left running)
    assert second["paused"] is False and second["answer"] == "small says 5"
    assert second["calls"] == (2 if planner else 1)
    with SQLMemory(memory_url) as memory:
        tasks = memory.trajectories(graph="langgraph", status=None)
        assert [[(s.index, s.stage) for s in t.steps] for t in tasks] == [[(0, "planner"), (1, "executor")] if planner else [(0, "executor")]]
        assert tasks[0].task.id == second["task"] and tasks[0].task.status == "done"


def test_an_entrypoint_that_asks_a_human_between_two_routed_calls_pays_each_once(memory):
    from langgraph.func import entrypoint

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    plan = routed_node(dispatcher, role="planner", prompt="p", output_key="plan", budget=Budget(calls=2))
    do = routed_node(dispatcher, role="executor", prompt="e", input_key="plan")

    @entrypoint(checkpointer=InMemorySaver())
    def flow(query: str) -> dict:  # LangGraph runs an entrypoint again from its start on resume
        planned = plan.invoke({"query": query, "query_id": query})
        interrupt({"plan": planned["plan"]})
        done = do.invoke({"plan": planned["plan"], "query_id": query, "agentroute": planned["agentroute"]})
        return {"answer": done["answer"], "task": done["agentroute_task_id"], "calls": done["agentroute"]["ledger"]["spent"][2]}

    cfg = {"configurable": {"thread_id": "functional"}}
    assert "__interrupt__" in flow.invoke("q1", cfg)
    out = flow.invoke(Command(resume="ok"), cfg)
    # was: the planner paid again on resume, and the 2-call budget refused the executor
    assert out["answer"] == "small says 1" and out["calls"] == 2
    assert _recorded(memory, out["task"]) == [(0, "planner"), (1, "executor")]


CRASHER = """
import json, os, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, StateGraph
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool
from tests.test_usergraph_hitl import State
memory_url, saver_path, mode = sys.argv[1:4]

def write(text):
    if mode == "start":
        raise RuntimeError("the worker crashed after the call")
    return {"answer": text}

memory = SQLMemory(memory_url)
dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
builder = StateGraph(State)
builder.add_node("answer", routed_node(dispatcher, role="executor", prompt="e", output=write, budget=Budget(calls=2)))
builder.add_edge(START, "answer")
with SqliteSaver.from_conn_string(saver_path) as saver:
    app, cfg = builder.compile(checkpointer=saver), {"configurable": {"thread_id": "crash"}}
    try:
        out = app.invoke({"query": "q7", "query_id": "q7"} if mode == "start" else None, cfg)
    except RuntimeError as exc:
        print(json.dumps({"crashed": str(exc)}))
        sys.exit(0)
    print(json.dumps({"answer": out["answer"], "calls": out["agentroute"]["ledger"]["spent"][2], "task": out["agentroute"]["task_id"]}))
memory.close()
"""


def test_a_first_routed_node_that_paid_then_crashed_resumes_in_another_process_within_its_budget(tmp_path):
    memory_url, saver_path = f"sqlite:///{tmp_path}/memory.db", str(tmp_path / "checkpoints.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def worker(mode: str) -> dict:
        done = subprocess.run([sys.executable, "-c", CRASHER, memory_url, saver_path, mode], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert "crashed" in worker("start")
    resumed = worker("resume")
    # was: the resume opened a second task with a budget of its own; the paid call was left in a
    # task still `running`, counted by no ledger
    assert resumed["answer"] == "small says 7" and resumed["calls"] == 2  # the crashed call counts
    with SQLMemory(memory_url) as memory:
        (task,) = memory.trajectories(graph="langgraph", status=None)
        assert task.task.id == resumed["task"] and [s.index for s in task.steps] == [0, 1]
        assert task.task.status == "done" and task.task.cost_usd == pytest.approx(sum(s.cost_usd for s in task.steps))
