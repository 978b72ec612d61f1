"""A routed node in YOUR StateGraph on the scale-out path: worker processes sharing one PostgreSQL
memory and one PostgresSaver, two of them resuming the same thread at once.

Workers are real OS processes (``python -c``) against a real server on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

import agentroute
from agentroute.memory import SQLMemory
from agentroute.types import TaskStatus
from tests.fixtures_claimed_graph import answer_graph, claimed_app
from tests.fixtures_postgres import saver_url, wait_for_checkpoint

ROOT = Path(agentroute.__file__).resolve().parents[1]

WORKER = """
import json, sys, time
from typing import TypedDict
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import START, StateGraph
from agentroute import Budget, Dispatcher, make_router, routed_node
import agentroute.graph as ag
from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory, TaskBusyError
from tests.helpers import replay_pool
memory_url, saver_url, mode, thread, hold_s, wrap = sys.argv[1:7]
flush_s = float(sys.argv[7]) if len(sys.argv) > 7 else 0.05

class State(ag.AgentrouteState):
    query: str
    query_id: str
    plan: str
    answer: str

def hold(state):  # a slow tool between two paid steps
    print("HOLD", flush=True)
    time.sleep(float(hold_s))
    return {}

memory = SQLMemory(memory_url, flush_interval_s=flush_s, prompt_commit=flush_s < 1)  # 5 s: batches wait
dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
builder = StateGraph(State)
builder.add_node("planner", routed_node(dispatcher, role="planner", prompt="plan", output_key="plan", budget=Budget(calls=2)))
builder.add_node("hold", hold)
builder.add_node("executor", routed_node(dispatcher, role="executor", prompt="do", input_key="plan", budget=Budget(calls=2)))
builder.add_edge(START, "planner"); builder.add_edge("planner", "hold"); builder.add_edge("hold", "executor")
with PostgresSaver.from_conn_string(saver_url) as saver:
    saver.setup()
    app = builder.compile(checkpointer=saver)
    if wrap == "yes":
        app = ag.claiming(app, memory)
    config = {"configurable": {"thread_id": thread}}
    if mode == "resume":  # resumers start their invocations together
        print("READY", flush=True)
        sys.stdin.readline()
    try:
        out = app.invoke({"query": "q1", "query_id": "q1"} if mode == "start" else None, config)
    except TaskBusyError as exc:
        print(json.dumps({"busy": str(exc)}), flush=True)
        sys.exit(3)
    except ConfigurationError as exc:
        print(json.dumps({"refused": str(exc)}), flush=True)
        sys.exit(4)
    print(json.dumps({"calls": out["agentroute"]["ledger"]["spent"][2], "task": out["agentroute"]["task_id"]}), flush=True)
memory.close()
"""


def _worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=ROOT,
    )  # fmt: skip


def _crash_in_hold(db: str, thread: str, wrap: str, flush_s: str = "0.05") -> None:
    """Worker A runs the planner step, then is killed (``kill -9``) in the slow tool."""
    a = _worker(db, saver_url(db), "start", thread, "60", wrap, flush_s)
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "HOLD", a.stderr.read() if a.stderr else ""
        wait_for_checkpoint(db, thread, 1)  # the planner's, saved in the background
    finally:
        a.kill()
        a.communicate()


def _steps(db: str) -> list[tuple[int, str]]:
    with SQLMemory(db) as memory:
        (only,) = memory.trajectories(graph="langgraph", status=get_args(TaskStatus))  # killed mid-graph: running
        return [(s.index, s.stage) for s in only.steps]


@pytest.mark.postgres
def test_two_workers_resuming_a_user_graph_thread_at_once_pay_its_steps_once(checkpoint_db: str) -> None:
    _crash_in_hold(checkpoint_db, "t-user", "yes")
    resumers = [_worker(checkpoint_db, saver_url(checkpoint_db), "resume", "t-user", "1.5", "yes") for _ in range(2)]
    for r in resumers:
        assert r.stdout is not None and r.stdout.readline().strip() == "READY", r.stderr.read() if r.stderr else ""
    outs = []
    for r in resumers:
        assert r.stdin is not None
        r.stdin.write("go\n")
        r.stdin.flush()
    for r in resumers:
        out, err = r.communicate(timeout=90)
        outs.append((r.returncode, out.strip().splitlines()[-1] if out.strip() else err[-800:]))
    # was: both ran the executor — 3 paid calls on a 2-call budget, the executor step recorded twice
    assert sorted(code for code, _ in outs) == [0, 3], outs
    busy = next(json.loads(line) for code, line in outs if code == 3)
    assert "being run by another worker" in busy["busy"]
    assert next(json.loads(line) for code, line in outs if code == 0)["calls"] == 2
    assert _steps(checkpoint_db) == [(0, "planner"), (1, "executor")]


@pytest.mark.postgres
def test_an_unclaimed_user_graph_on_a_shared_postgres_memory_is_refused_before_it_pays(checkpoint_db: str) -> None:
    w = _worker(checkpoint_db, saver_url(checkpoint_db), "start", "t-bare", "0", "no")
    out, err = w.communicate(timeout=90)
    # was: it ran, and two such workers resuming one thread paid for the same step twice
    assert w.returncode == 4, (out, err[-2000:])
    refused = json.loads(out.strip().splitlines()[-1])["refused"]
    assert "claiming(" in refused and "t-bare" in refused
    with SQLMemory(checkpoint_db) as memory:
        assert memory.stats()["steps"] == 0


async def _drain(events) -> list:
    return [e async for e in events]


@pytest.mark.postgres
def test_a_claimed_graph_refuses_every_entry_point_while_another_worker_holds_the_thread(checkpoint_db: str) -> None:
    import asyncio

    from langgraph.checkpoint.postgres import PostgresSaver

    from agentroute.memory import TaskBusyError

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other_worker, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, calls=2).with_config(tags=["prod"])
        cfg = {"configurable": {"thread_id": "held"}}
        assert other_worker.claim_task("thread:held")
        try:
            for call in (lambda: app.invoke({"query": "q1", "query_id": "q1"}, cfg),
                         lambda: list(app.stream({"query": "q1", "query_id": "q1"}, cfg, stream_mode="updates")),
                         lambda: asyncio.run(app.ainvoke({"query": "q1", "query_id": "q1"}, cfg)),
                         lambda: asyncio.run(_drain(app.astream_events({"query": "q1", "query_id": "q1"}, cfg, version="v2"))),
                         lambda: app.batch([{"query": "q1", "query_id": "q1"}], [cfg])):
                with pytest.raises(TaskBusyError, match="being run by another worker"):
                    call()
        finally:
            other_worker.release_task("thread:held")
        assert memory.stats()["steps"] == 0  # nothing ran or was paid while the thread was held
        out = app.invoke({"query": "q1", "query_id": "q1"}, cfg)  # (a sync-only saver: LangGraph's ainvoke can't use it)
        assert out["answer"] == "small says 1"
        assert other_worker.claim_task("thread:held")  # given back after the invocation
        other_worker.release_task("thread:held")


@pytest.mark.postgres
def test_a_claimed_graph_on_an_async_postgres_saver_resumes_across_an_interrupt(checkpoint_db: str) -> None:
    import asyncio

    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.types import Command, interrupt

    def review(text: str) -> dict[str, str]:
        return {"answer": text if interrupt({"draft": text}) == "ok" else "rejected"}

    async def main(memory: SQLMemory) -> tuple[dict, dict]:
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            app = claimed_app(memory, saver, calls=1, output=review)
            cfg = {"configurable": {"thread_id": "async-review"}}
            paused = await app.ainvoke({"query": "q1", "query_id": "q1"}, cfg)
            with SQLMemory(checkpoint_db) as other_worker:  # the claim was given back while a human reads the draft
                assert other_worker.claim_task("thread:async-review")
                other_worker.release_task("thread:async-review")
            return paused, await app.ainvoke(Command(resume="ok"), cfg)

    with SQLMemory(checkpoint_db) as memory:
        paused, done = asyncio.run(main(memory))
        assert paused["__interrupt__"][0].value == {"draft": "small says 1"}
        assert done["answer"] == "small says 1" and done["agentroute"]["ledger"]["spent"][2] == 1
        memory.flush()
        assert len(memory.get_task(done["agentroute"]["task_id"]).steps) == 1


@pytest.mark.postgres
def test_a_runtime_that_serialises_threads_itself_opts_out_of_the_claim(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        builder = answer_graph(memory, calls=1, require_claim=False)
        out = builder.compile(checkpointer=saver).invoke({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "server"}})
        assert out["answer"] == "small says 1"


@pytest.mark.postgres
def test_a_worker_killed_after_a_routed_nodes_checkpoint_leaves_its_paid_step_in_the_memory(checkpoint_db: str) -> None:
    """A user's StateGraph: the routed node commits its step before LangGraph writes the checkpoint
    that counts it (as an AgentGraph's nodes do). Was: killed once that checkpoint was saved, the
    planner's paid step, still queued behind a 5 s flush interval, was not in the memory (the
    project's CI lost it at 0.05 s, on a loaded machine)."""
    _crash_in_hold(checkpoint_db, "t-flush", "yes", flush_s="5")
    assert _steps(checkpoint_db) == [(0, "planner")]
