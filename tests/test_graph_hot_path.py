"""The graph side of a routed step does its per-task work once (issue 10: overhead).

``arun`` leaves seeding the input to ``astream`` (it was done twice a task); outside a Jupyter kernel
``stoppable_in_kernel`` builds no context manager per task; the state's dict-merging channels open a
new task's channel without re-deriving their value type. Each short-cut is checked against what it
replaces: LangGraph's own ``BinaryOperatorAggregate`` on arbitrary writes, the same final state.
"""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from langgraph._internal._typing import MISSING
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Overwrite

from agentroute import AgentGraph, make_router
from agentroute.graph import _fresh_dict_aggregate, _merge
from agentroute.graph_runtime import stoppable_in_kernel
from tests.helpers import replay_pool

DICT_CHANNELS = ("outputs", "context", "agentroute")


def three_roles(**options: Any) -> Any:
    g = AgentGraph("hot")
    for role in ("planner", "executor", "summarizer"):
        g.add_role(role, prompt=role)
    g.add_edge("planner", "executor").add_edge("executor", "summarizer")
    return g.compile(pool=replay_pool(), router=make_router("cheapest"), **options)


def test_arun_seeds_its_input_once() -> None:
    app = three_roles()
    seeds = []
    seed = app._seed

    def counted(input: Any, config: Any) -> Any:
        seeds.append(input)
        return seed(input, config)

    app._seed = counted  # type: ignore[method-assign]
    result = app.run("What is 2+2?", query_id="q1")
    assert len(seeds) == 1  # was 2: arun seeded, then astream seeded the seeded input again
    assert result.status == "done"
    assert result.state["task_id"] == result.task.id == result.state["agentroute"]["task_id"]
    assert set(result.state["outputs"]) == {"planner", "executor", "summarizer"}


def test_arun_with_a_checkpointer_still_runs_one_thread_per_task() -> None:
    app = three_roles(checkpointer=InMemorySaver())
    result = app.run("What is 2+2?", query_id="q1")
    snapshot = app.get_state({"configurable": {"thread_id": result.task.id}})  # the default thread: the task id
    assert snapshot.values["status"] == "done" and snapshot.values["task_id"] == result.task.id


def test_stoppable_in_kernel_outside_a_kernel_builds_nothing(monkeypatch: Any) -> None:
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # the notebook tests load it
    assert stoppable_in_kernel() is stoppable_in_kernel()  # one shared no-op, not a generator per task

    async def inside() -> int:
        async with stoppable_in_kernel():
            return len(asyncio.all_tasks())

    assert asyncio.run(inside()) == 1  # no ticker beside the main task


def test_stoppable_in_kernel_in_a_kernel_wakes_the_loop(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))

    async def inside() -> tuple[int, int]:
        async with stoppable_in_kernel():
            during = len(asyncio.all_tasks())
        await asyncio.sleep(0)
        return during, len(asyncio.all_tasks())

    assert asyncio.run(inside()) == (2, 1)  # the ticker runs during the block only


def test_the_state_dict_channels_open_fast() -> None:
    app = three_roles()
    fast = _fresh_dict_aggregate()
    for key in DICT_CHANNELS:
        channel = app.channels[key]
        assert type(channel) is fast and isinstance(channel, BinaryOperatorAggregate)
        opened = channel.from_checkpoint(MISSING)
        assert opened.value == {} and opened.value is not channel.from_checkpoint(MISSING).value  # a new dict each time
        assert (opened.key, opened.typ, opened.operator) == (channel.key, channel.typ, channel.operator)


VALUES = st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3)
WRITE = st.one_of(VALUES, VALUES.map(Overwrite), VALUES.map(lambda v: {"__overwrite__": v}))


@given(st.one_of(st.just(MISSING), VALUES), st.lists(st.lists(WRITE, max_size=3), max_size=4))
def test_a_fast_dict_channel_behaves_as_langgraphs(start: Any, supersteps: list[list[Any]]) -> None:
    base = BinaryOperatorAggregate(dict[str, Any], _merge)
    base.key = "outputs"
    ours, theirs = _fresh_dict_aggregate().like(base).from_checkpoint(start), base.from_checkpoint(start)
    for writes in supersteps:
        outcomes = []
        for channel in (ours, theirs):
            try:
                outcomes.append((channel.update(writes), channel.checkpoint()))
            except Exception as exc:  # noqa: BLE001 - both must fail alike (two Overwrites in a superstep)
                outcomes.append((type(exc), None))
        assert outcomes[0] == outcomes[1]
    assert type(ours.copy()) is type(ours) and ours.copy().value == theirs.copy().value


def test_a_resumed_thread_opens_its_checkpointed_dicts() -> None:
    app = three_roles(checkpointer=InMemorySaver(), interrupt_before=["executor"])
    config = {"configurable": {"thread_id": "t1"}}
    app.invoke({"query": "What is 2+2?", "query_id": "q1"}, config)
    paused = app.get_state(config).values
    assert set(paused["outputs"]) == {"planner"}
    final = app.invoke(None, config)
    assert set(final["outputs"]) == {"planner", "executor", "summarizer"}
    assert final["agentroute"]["task_id"] == paused["agentroute"]["task_id"] and final["status"] == "done"
