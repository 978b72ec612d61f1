"""A task resumed by a new worker counts the time it already ran against ``Budget(seconds=...)``.

Your node calls a routed node, then ``interrupt()``: its checkpoint holds no ledger, so the resuming
worker reopens the task from the memory. Before, the reopened task's clock started at zero — each
resume gave the ``seconds`` budget afresh; now it starts at the time its recorded steps ran.

Real SQLite memory and ``SqliteSaver`` files, opened again by the resuming worker; that worker is
this process once its live run is gone — as in a new process, or after ``LIVE`` evicted the idle
run (a busy process past ``LIVE.idle_limit``). In-process: ~1.5 s, where a subprocess took ~7 s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, get_args

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt

import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.dispatch.run import LIVE
from agentroute.memory import SQLMemory
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend
from agentroute.types import TaskStatus

DELAY_S = 0.3  # each provider call
SECONDS = 0.5  # the budget: one call fits, two do not


class Slow(ReplayBackend):
    blocks = True  # it waits as a provider does: the deadline cuts it

    async def complete(self, request: Any, card: Any) -> Any:
        await asyncio.sleep(DELAY_S)
        return await super().complete(request, card)


class State(ag.AgentrouteState, total=False):
    query: str
    query_id: str
    answer: str


def _build(memory: SQLMemory, saver: Any) -> Any:
    card = ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1)
    pool = ModelPool([card], {"replay": Slow([LoggedOutcome(f"q{i}", "small", 1.0, 0.001, "a") for i in range(5)])})
    draft = routed_node(Dispatcher(pool, make_router("cheapest"), memory=memory), role="executor", prompt="e",
                        budget=Budget(seconds=SECONDS))

    def review(state: State, config: RunnableConfig) -> dict:
        first = draft.invoke(state, config)  # paid before the interrupt; taken back on resume
        interrupt("ok?")
        return draft.invoke({**state, **first, "query_id": "q3"}, config)  # a second call of the same task

    builder = StateGraph(State)
    builder.add_node("review", review)
    builder.add_edge(START, "review")
    return builder.compile(checkpointer=saver)


def _worker(folder: Path, resume: bool) -> dict:
    """One worker's invocation on its own memory and saver: the task's status and its steps'."""
    cfg = {"configurable": {"thread_id": "t"}}
    with SQLMemory(f"sqlite:///{folder}/memory.db") as memory, SqliteSaver.from_conn_string(f"{folder}/ckpt.db") as saver:
        _build(memory, saver).invoke(Command(resume="yes") if resume else {"query": "q1", "query_id": "q1"}, cfg)
        memory.flush()
        (task,) = memory.trajectories(status=get_args(TaskStatus))  # paused at the interrupt: running
        return {"id": task.task.id, "status": task.task.status, "steps": [s.status for s in task.steps]}


def test_a_task_reopened_after_an_interrupt_keeps_the_time_it_ran(tmp_path: Path) -> None:
    first = _worker(tmp_path, resume=False)
    LIVE.drop(first["id"])  # the resuming worker holds no live run of the task
    resumed = _worker(tmp_path, resume=True)  # it answers the interrupt
    # was: ["ok", "ok"], status done: the resumed task's clock started again at zero, so the second
    # 0.3 s call fitted a 0.5 s budget that the first 0.3 s call had mostly used
    assert resumed["steps"][0] == "ok" and resumed["steps"][1:] != ["ok"], resumed
    assert resumed["status"] == "budget_exhausted", resumed
