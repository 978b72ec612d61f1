"""A task resumed by a new worker counts the time it already ran against ``Budget(seconds=...)``.

Your node calls a routed node, then ``interrupt()``: its checkpoint holds no ledger, so the resuming
worker reopens the task from the memory. Before, the reopened task's clock started at zero — each
resume gave the ``seconds`` budget afresh; now it starts at the time its recorded steps ran.

Real SQLite memory and ``SqliteSaver`` files; the resume runs in a real second process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import agentroute

ROOT = Path(agentroute.__file__).resolve().parents[1]
DELAY_S = 0.6  # each provider call
SECONDS = 1.0  # the budget: one call fits, two do not

GRAPH = f"""
import asyncio, json, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt
import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend

class Slow(ReplayBackend):
    blocks = True  # it waits as a provider does: the deadline cuts it

    async def complete(self, request, card):
        await asyncio.sleep({DELAY_S})
        return await super().complete(request, card)

class State(ag.AgentrouteState, total=False):
    query: str
    query_id: str
    answer: str

def build(memory, saver):
    card = ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1)
    pool = ModelPool([card], {{"replay": Slow([LoggedOutcome(f"q{{i}}", "small", 1.0, 0.001, "a") for i in range(5)])}})
    draft = routed_node(Dispatcher(pool, make_router("cheapest"), memory=memory), role="executor", prompt="e",
                        budget=Budget(seconds={SECONDS}))

    def review(state, config):
        first = draft.invoke(state, config)  # paid before the interrupt; taken back on resume
        interrupt("ok?")
        return draft.invoke({{**state, **first, "query_id": "q3"}}, config)  # a second call of the same task

    builder = StateGraph(State)
    builder.add_node("review", review)
    builder.add_edge(START, "review")
    return builder.compile(checkpointer=saver)

def main(folder, resume):
    cfg = {{"configurable": {{"thread_id": "t"}}}}
    with SQLMemory("sqlite:///" + folder + "/memory.db") as memory, SqliteSaver.from_conn_string(folder + "/ckpt.db") as saver:
        app = build(memory, saver)
        app.invoke(Command(resume="yes") if resume else {{"query": "q1", "query_id": "q1"}}, cfg)
        memory.flush()
        (task,) = memory.trajectories(status=None)
        print(json.dumps({{"status": task.task.status, "steps": [s.status for s in task.steps]}}))
"""


def _run(folder: Path, resume: bool) -> dict:
    code = GRAPH + f"\nmain({str(folder)!r}, {resume!r})\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_task_reopened_after_an_interrupt_keeps_the_time_it_ran(tmp_path: Path) -> None:
    namespace: dict = {}
    exec(compile(GRAPH, "graph", "exec"), namespace)  # the first worker: this process
    namespace["main"](str(tmp_path), False)
    resumed = _run(tmp_path, resume=True)  # a new worker answers the interrupt
    # was: ["ok", "ok"], status done: the resumed task's clock started again at zero, so the second
    # 0.6 s call fitted a 1 s budget that the first 0.6 s call had mostly used
    assert resumed["steps"][0] == "ok" and resumed["steps"][1:] != ["ok"], resumed
    assert resumed["status"] == "budget_exhausted", resumed
