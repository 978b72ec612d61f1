"""Time travel, LangGraph retries and the recursion limit around routed nodes of YOUR StateGraph:
whatever LangGraph runs again is paid again, and the ledger, the budget and the recorded cost
always count exactly what was paid (docs/langgraph.md)."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.errors import GraphRecursionError
from langgraph.graph import START, StateGraph
from langgraph.types import RetryPolicy

import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.dispatch.run import LIVE
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool


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


def _paid(memory: SQLMemory, task_id: str) -> tuple[int, float, float]:
    memory.flush()
    t = memory.get_task(task_id)
    return len(t.steps), sum(s.cost_usd for s in t.steps), t.task.cost_usd


@pytest.mark.parametrize("new_process", [False, True], ids=["same-process", "new-process"])
def test_replaying_an_old_checkpoint_pays_again_and_the_ledger_counts_every_call(memory, tmp_path, new_process):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(dispatcher, role="planner", prompt="p", output_key="plan", budget=Budget(calls=3)))
    builder.add_node("executor", routed_node(dispatcher, role="executor", prompt="e", input_key="plan"))
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "executor")
    cfg = {"configurable": {"thread_id": "travel"}}

    async def main():
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            app = builder.compile(checkpointer=saver)
            first = await app.ainvoke({"query": "q1", "query_id": "q1"}, cfg)
            history = [h async for h in app.aget_state_history(cfg)]
            before_executor = next(h for h in history if h.next == ("executor",))
            if new_process:
                LIVE.drop(first["agentroute"]["task_id"])
            again = await app.ainvoke(None, before_executor.config)
            twice = await app.ainvoke(None, before_executor.config)  # the budget's third call was the last
            return first, again, twice

    first, again, twice = asyncio.run(main())
    task_id = first["agentroute"]["task_id"]
    assert again["agentroute"]["task_id"] == twice["agentroute"]["task_id"] == task_id
    assert again["agentroute"]["ledger"]["spent"][2] == 3 and again["answer"]
    steps, summed, recorded = _paid(memory, task_id)
    assert steps == 3 and recorded == pytest.approx(summed)  # the replay refused by the budget paid nothing
    assert twice["agentroute"]["ledger"]["spent"][2] == 3 and twice["agentroute"]["exhausted"]


def test_a_langgraph_retry_of_a_node_that_paid_pays_again_under_the_same_budget(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    draft = routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=2))
    tries = {"n": 0}

    def flaky(state, config):
        draft.invoke(state, config)
        tries["n"] += 1
        raise ValueError(f"a tool failed after the routed step (try {tries['n']})")

    builder = StateGraph(State)
    builder.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, retry_on=ValueError))
    builder.add_edge(START, "flaky")
    with pytest.raises(ValueError, match="try 3"):
        builder.compile().invoke({"query": "q1", "query_id": "q1"})
    (task,) = memory.trajectories(graph="langgraph", status=None)
    assert len(task.steps) == 2  # two tries paid; the third was refused by the 2-call budget
    assert task.task.cost_usd == pytest.approx(sum(s.cost_usd for s in task.steps))


def test_the_recursion_limit_stops_a_routed_loop_with_every_paid_step_recorded(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("loop", routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=50)))
    builder.add_edge(START, "loop")
    builder.add_conditional_edges("loop", lambda state: "loop")
    with pytest.raises(GraphRecursionError):
        builder.compile().invoke({"query": "q1", "query_id": "q1"}, {"recursion_limit": 4})
    memory.flush()
    (task,) = memory.trajectories(graph="langgraph", status=None)
    assert len(task.steps) == 4 and task.task.status != "running"
    assert task.task.cost_usd == pytest.approx(sum(s.cost_usd for s in task.steps))
