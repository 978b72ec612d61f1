"""The time a human takes to answer an ``interrupt()`` (or before resuming an ``AgentGraph`` paused
at ``interrupt_before``) does not count against ``Budget(seconds=...)`` in the process that still
holds the task live, as in a worker that rebuilds it (was: the live task's clock ran on through the
pause, so a resume in the same process found the budget spent).

Real LangGraph (your StateGraph with a routed node; an ``AgentGraph``), real SQLite memory,
``InMemorySaver``; the same process pauses and resumes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt

import agentroute.graph as ag
from agentroute import AgentGraph, Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend

DELAY_S = 0.2  # each provider call
SECONDS = 0.6  # the budget: two calls fit
PAUSE_S = 0.5  # the human's think time: with one call, more than the budget


class Slow(ReplayBackend):
    blocks = True  # it waits as a provider does: the deadline cuts it

    async def complete(self, request: Any, card: Any) -> Any:
        await asyncio.sleep(DELAY_S)
        return await super().complete(request, card)


def _pool() -> ModelPool:
    card = ModelCard(id="small", backend="replay", input_price=0.1, output_price=0.1)
    return ModelPool([card], {"replay": Slow([LoggedOutcome(f"q{i}", "small", 1.0, 0.001, "a") for i in range(5)])})


class State(ag.AgentrouteState, total=False):
    query: str
    query_id: str
    answer: str


def _statuses(memory: SQLMemory) -> tuple[str, list[str]]:
    memory.flush()
    (task,) = memory.trajectories(status=None)
    return str(task.task.status), [str(s.status) for s in task.steps]


def test_a_user_graph_resumed_in_the_same_process_does_not_count_the_pause(tmp_path: Path) -> None:
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        draft = routed_node(Dispatcher(_pool(), make_router("cheapest"), memory=memory), role="executor", prompt="e",
                            budget=Budget(seconds=SECONDS))

        def review(state: State, config: RunnableConfig) -> dict:
            first = draft.invoke(state, config)  # paid before the interrupt; taken back on resume
            interrupt("ok?")
            return draft.invoke({**state, **first, "query_id": "q3"}, config)

        builder = StateGraph(State)
        builder.add_node("review", review)
        builder.add_edge(START, "review")
        app = builder.compile(checkpointer=InMemorySaver())
        cfg: RunnableConfig = {"configurable": {"thread_id": "t"}}
        app.invoke({"query": "q1", "query_id": "q1"}, cfg)
        time.sleep(PAUSE_S)  # the human reads the draft
        app.invoke(Command(resume="yes"), cfg)
        # was: ('budget_exhausted', ['ok']): 0.2 s of calls + 0.5 s of pause spent the 0.6 s budget
        assert _statuses(memory) == ("done", ["ok", "ok"])


def test_an_agent_graph_resumed_in_the_same_process_does_not_count_the_pause(tmp_path: Path) -> None:
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
        graph = AgentGraph("paused").add_role("planner", prompt="plan").add_role("executor", prompt="do")
        app = graph.add_edge("planner", "executor").compile(
            pool=_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(seconds=SECONDS),
            checkpointer=InMemorySaver(), interrupt_before=["executor"],
        )
        cfg: RunnableConfig = {"configurable": {"thread_id": "t"}}
        app.invoke({"query": "q1", "query_id": "q1"}, cfg)
        time.sleep(PAUSE_S)  # a human looks at the plan
        app.invoke(None, cfg)
        # was: the executor's step refused, the task budget_exhausted
        assert _statuses(memory) == ("done", ["ok", "ok"])
