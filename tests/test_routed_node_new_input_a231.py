"""A paused task that the thread's next input abandons is recorded ``interrupted``, not ``done``.

Your ``StateGraph`` with routed nodes pauses at an ``interrupt()`` on a checkpointed thread; the
task stays ``running``. When the thread's next invocation brings new input instead of a resume,
that paused task ends (its router told, once). Was: recorded ``done`` although its graph stopped
mid-way, so ``trajectories()`` (default: done) fed the half task to training as a whole one. As for
an evicted paused task, it ends ``done`` when a resume ran plain nodes past the pause before the new
input, and a task recorded ``failed`` stays ``failed``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from agentroute import Dispatcher
from agentroute import graph_runtime as runtime
from agentroute.memory import SQLMemory
from tests import test_routed_node_task_end as base
from tests.helpers import replay_pool
from tests.test_routed_node_evicted_a221 import THREADS, paused_app, question
from tests.test_routed_node_task_end import Recording, chain_with

memory = base.memory  # the common path's SQLite memory fixture
CFG = THREADS[0]
UNKNOWN = {"query": "question 999", "query_id": "q999"}  # no logged outcome: both models fail (two steps)


@pytest.fixture(autouse=True)
def own_paused_tasks(monkeypatch):
    """This module's paused and told tasks, apart from the process's."""
    monkeypatch.setattr(runtime, "_PAUSED", OrderedDict())
    monkeypatch.setattr(runtime, "_TOLD", OrderedDict())


@pytest.fixture(params=["memory", "sqlite"])
def saver(request, tmp_path) -> Iterator[object]:
    """The thread's checkpointer: LangGraph's in-memory one, or SQLite in a file."""
    if request.param == "memory":
        yield InMemorySaver()
        return
    with SqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as sqlite:
        yield sqlite


def ended_by_new_input(
    memory: SQLMemory, router: Recording, old: str, new: str, status: str, last: int
) -> None:
    """``old`` ended with status ``status`` (its router told once, at step ``last``); ``new`` runs."""
    assert old != new
    assert router.ended() == {old: [last]}
    memory.flush()
    assert memory.get_task(old).task.status == status
    assert memory.get_task(new).task.status == "running"  # paused at its own review


def run_sync(memory, saver, first: dict, *, last: bool = False, resume: bool = False,
             edit: bool = False) -> tuple[Recording, str, str]:  # fmt: skip
    """``first`` pauses at the review, is resumed (``resume``) or its state edited (``edit``), then
    the thread's next input (question 1) pauses again: ``(router, first task, second task)``."""
    router, app = paused_app(memory, last=last, checkpointer=saver)
    assert "__interrupt__" in app.invoke(first, CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    if resume:
        assert app.invoke(Command(resume="approved"), CFG)["plan"] == "approved"  # plain nodes only
    if edit:
        app.update_state(CFG, {"plan": "an edited plan"})
    assert router.ended() == {}
    assert "__interrupt__" in app.invoke(question(1), CFG)
    return router, old, app.get_state(CFG).values["agentroute_task_id"]


async def run_async(
    memory, saver, first: dict, *, last: bool = False, resume: bool = False
) -> tuple[Recording, str, str]:
    """:func:`run_sync` through ``ainvoke``."""
    router, app = paused_app(memory, last=last, checkpointer=saver)
    assert "__interrupt__" in await app.ainvoke(first, CFG)
    old = (await app.aget_state(CFG)).values["agentroute_task_id"]
    if resume:
        assert (await app.ainvoke(Command(resume="approved"), CFG))["plan"] == "approved"
    assert router.ended() == {}
    assert "__interrupt__" in await app.ainvoke(question(1), CFG)
    return router, old, (await app.aget_state(CFG)).values["agentroute_task_id"]


def async_saver(tmp_path, kind: str):
    """An async context of the thread's checkpointer: ``AsyncSqliteSaver``, or an ``InMemorySaver``."""
    if kind == "sqlite":
        return AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db"))
    return _in_memory()


class _in_memory:  # noqa: N801 - used as a context manager, like the savers' from_conn_string
    async def __aenter__(self) -> InMemorySaver:
        return InMemorySaver()

    async def __aexit__(self, *exc: object) -> None:
        return None


async def with_async_saver(tmp_path, kind: str, memory, first: dict, **kwargs) -> tuple[Recording, str, str]:
    async with async_saver(tmp_path, kind) as saver:
        return await run_async(memory, saver, first, **kwargs)


# -- (a) paused, then a new input: the abandoned task is no finished one ------------------------------
def test_new_input_after_an_unanswered_interrupt_records_the_paused_task_interrupted(memory, saver):
    router, old, new = run_sync(memory, saver, question(0))
    ended_by_new_input(memory, router, old, new, "interrupted", last=0)  # was: done
    assert memory.trajectories(graph="langgraph", status=["done"]) == []  # was: the half task
    assert [t.task.status for t in memory.trajectories(graph="langgraph")] == ["interrupted"]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ainvoke_new_input_after_an_unanswered_interrupt_records_the_paused_task_interrupted(
    tmp_path, memory, kind
):
    router, old, new = asyncio.run(with_async_saver(tmp_path, kind, memory, question(0)))
    ended_by_new_input(memory, router, old, new, "interrupted", last=0)  # was: done


def test_new_input_after_an_update_state_alone_records_the_paused_task_interrupted(memory, saver):
    """``update_state`` writes a checkpoint but runs no step: the graph is still where it paused."""
    router, old, new = run_sync(memory, saver, question(0), edit=True)
    ended_by_new_input(memory, router, old, new, "interrupted", last=0)


# -- (b) resumed through plain nodes to the graph's end, then a new input: done ----------------------
def test_new_input_after_a_resume_through_plain_nodes_records_the_task_done(memory, saver):
    """planner → solver → review, approved: the graph reached its end before the new input."""
    router, old, new = run_sync(memory, saver, question(0), last=True, resume=True)
    ended_by_new_input(memory, router, old, new, "done", last=1)
    assert [t.task.id for t in memory.trajectories(graph="langgraph", status=["done"])] == [old]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ainvoke_new_input_after_a_resume_through_plain_nodes_records_the_task_done(tmp_path, memory, kind):
    router, old, new = asyncio.run(
        with_async_saver(tmp_path, kind, memory, question(0), last=True, resume=True)
    )
    ended_by_new_input(memory, router, old, new, "done", last=1)


# -- (c) a failed task stays failed --------------------------------------------------------------------
def test_new_input_after_a_failed_paused_task_keeps_it_failed(memory, saver):
    """The planner's every agent failed (recorded ``failed``), the review paused: new input ends it as it was."""
    router, old, new = run_sync(memory, saver, UNKNOWN)
    ended_by_new_input(memory, router, old, new, "failed", last=1)  # the fallback's failed step


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ainvoke_new_input_after_a_failed_paused_task_keeps_it_failed(tmp_path, memory, kind):
    router, old, new = asyncio.run(with_async_saver(tmp_path, kind, memory, UNKNOWN))
    ended_by_new_input(memory, router, old, new, "failed", last=1)  # the fallback's failed step


@pytest.mark.postgres
def test_new_input_after_a_claimed_invocation_that_raised_keeps_the_task_failed(checkpoint_db):
    """Workers share a PostgreSQL memory and checkpoints (``claiming``): the invocation raised after
    the planner (recorded ``failed``, resumable); the thread's next input ends it, still ``failed``."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from agentroute.graph import claiming
    from tests.fixtures_postgres import saver_url

    def flaky(state):
        if state["query_id"] == "q0":
            raise RuntimeError("a tool failed")
        return {}

    router = Recording()
    with (
        SQLMemory(checkpoint_db) as memory,
        PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver,
    ):
        saver.setup()
        graph = chain_with(Dispatcher(replay_pool(), router, memory=memory), "flaky", flaky)
        app = claiming(graph.compile(checkpointer=saver), memory)
        with pytest.raises(RuntimeError, match="a tool failed"):
            app.invoke(question(0), CFG)
        old = app.get_state(CFG).values["agentroute_task_id"]
        assert app.invoke(question(1), CFG)["answer"]
        new = app.get_state(CFG).values["agentroute_task_id"]
        memory.flush()
        assert (memory.get_task(old).task.status, memory.get_task(new).task.status) == ("failed", "done")
        assert router.ended() == {old: [0], new: [1]}


def test_new_input_after_an_unclaimed_invocation_that_raised_records_the_task_interrupted(memory):
    """Without ``claiming`` the error leaves the record ``running`` (resumable); the next input
    abandons the task mid-graph: ``interrupted`` (was: done)."""
    router = Recording()
    app = base.crashing_once(Dispatcher(replay_pool(), router, memory=memory))
    with pytest.raises(RuntimeError, match="crashed"):
        app.invoke(question(0), CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    assert app.invoke(question(1), CFG)["answer"]
    new = app.get_state(CFG).values["agentroute_task_id"]
    memory.flush()
    assert (memory.get_task(old).task.status, memory.get_task(new).task.status) == ("interrupted", "done")
    assert router.ended() == {old: [0], new: [1]}
