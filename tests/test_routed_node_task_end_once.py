"""A routed node's task is told ended once, on the two paths where it was told twice or never.

Past the cap on paused tasks, the oldest is ended as it is evicted — its router told, once (was:
dropped, its router never told). A checkpointed thread sent the same ``input_key`` value again
continues the task (documented), but a router told the task ended is not told again with only the
new steps (was: a second end, ``[0, 1]`` then ``[2, 3]`` learned for one task).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agentroute import Dispatcher
from agentroute import graph_runtime as runtime
from agentroute.graph import new_task
from tests import test_routed_node_task_end as base
from tests.helpers import replay_pool
from tests.test_routed_node_task_end import Recording, chain, crashing_once, whole_tasks

memory, colony = base.memory, base.colony  # the fixtures of the common path's tests


@pytest.fixture(autouse=True)
def own_task_ends(monkeypatch):
    """This module's paused and told tasks, apart from the process's."""
    monkeypatch.setattr(runtime, "_PAUSED", OrderedDict())
    monkeypatch.setattr(runtime, "_TOLD", OrderedDict(), raising=False)


def paused_threads(app, n: int, start: int = 0) -> list[dict]:
    """``n`` threads, each paused before the solver (the planner ran)."""
    configs = [{"configurable": {"thread_id": f"paused{i}"}} for i in range(start, start + n)]
    for i, cfg in enumerate(configs, start):
        app.invoke({"query": f"question {i}", "query_id": f"q{i}"}, cfg)
    return configs


def thread_task(app, cfg) -> str:
    return app.get_state(cfg).values["agentroute_task_id"]


# -- past the cap on paused tasks -------------------------------------------------------------------
def test_the_oldest_paused_task_is_ended_when_evicted_past_the_cap(monkeypatch, memory):
    monkeypatch.setattr(runtime, "_PAUSED_LIMIT", 2)
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router, memory=memory), checkpointer=InMemorySaver(),
                interrupt_before=["solver"])  # fmt: skip
    configs = paused_threads(app, 2)
    assert router.ended() == {}  # within the cap: paused, not ended
    configs += paused_threads(app, 1, start=2)
    oldest = thread_task(app, configs[0])
    assert router.ended() == {oldest: [0]}  # was: {} (dropped, never told)
    assert set(runtime._PAUSED) == {thread_task(app, cfg) for cfg in configs[1:]}
    memory.flush()
    assert memory.get_task(oldest).task.status == "interrupted"  # its solver never ran


def test_an_evicted_task_resumed_later_is_not_told_ended_again(monkeypatch, memory):
    monkeypatch.setattr(runtime, "_PAUSED_LIMIT", 1)
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router, memory=memory), checkpointer=InMemorySaver(),
                interrupt_before=["solver"])  # fmt: skip
    first, second = paused_threads(app, 2)
    oldest = thread_task(app, first)
    assert router.ended() == {oldest: [0]}
    assert app.invoke(None, first)["answer"]  # the solver runs: the record is brought up to date
    assert asyncio.run(app.ainvoke(None, second))["answer"]
    assert router.ended() == {oldest: [0], thread_task(app, second): [1]}  # told once each
    memory.flush()
    assert len(memory.get_task(oldest).steps) == 2


# -- the same input again on a checkpointed thread --------------------------------------------------
def test_the_same_input_again_continues_the_task_without_a_second_end(memory):
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router, memory=memory), checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "again"}}
    app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
    task_id = thread_task(app, cfg)
    assert router.ended() == {task_id: [1]}
    assert app.invoke({"query": "question 0", "query_id": "q0"}, cfg)["answer"]
    assert asyncio.run(app.ainvoke({"query": "question 0", "query_id": "q0"}, cfg))["answer"]
    assert thread_task(app, cfg) == task_id  # documented: the same value continues the task
    assert router.ended() == {task_id: [1]}  # was: {task_id: [1, 3, 5]}
    memory.flush()
    record = memory.get_task(task_id)
    assert (record.task.status, len(record.steps)) == ("done", 6)  # the record keeps every step
    app.invoke({"query": "question 0", "query_id": "q0", "agentroute": new_task()}, cfg)
    assert len(router.ended()) == 2 and thread_task(app, cfg) != task_id  # an explicit new task is told


def test_the_ant_colony_learns_a_repeated_input_s_task_once_whole(memory, colony):
    app = chain(Dispatcher(replay_pool(), colony, memory=memory), checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "colony"}}
    for _ in range(2):
        assert app.invoke({"query": "question 0", "query_id": "q0"}, cfg)["answer"]
    whole_tasks(colony, 1)  # was: [0, 1] and [2, 3] learned for one task


def test_a_retry_with_the_same_input_after_a_crash_is_told_once_whole(memory):
    """The crashed invocation did not end the task: the retry that finishes it tells its end."""
    router = Recording()
    app, cfg = crashing_once(Dispatcher(replay_pool(), router, memory=memory)), {"configurable": {"thread_id": "retry"}}
    with pytest.raises(RuntimeError, match="crashed"):
        app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
    assert router.ended() == {}
    assert app.invoke({"query": "question 0", "query_id": "q0"}, cfg)["answer"]
    assert router.ended() == {thread_task(app, cfg): [2]}
