"""A claimed invocation's stream — ``claiming(app, memory)`` on your StateGraph, or an
``AgentGraph`` on a shared PostgreSQL memory — gives its claim back at once however its consumer
leaves: a ``break`` then ``aclose()``, or the consuming asyncio task cancelled mid-``astream``; and
the task it ran ends ``interrupted`` (stopped from outside), not ``running`` or ``failed``.

Real PostgreSQL server on loopback, real savers; ``other`` is a second memory (another worker's
session) that tries the claim.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

import agentroute.graph as ag
from agentroute import AgentGraph, Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool

pytestmark = pytest.mark.postgres


class State(ag.AgentrouteState, total=False):
    query: str
    query_id: str
    answer: str
    note: str


@pytest.fixture
def db(postgres_url: str) -> str:
    from agentroute.memory.pgserver import create_database

    pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
    return create_database(postgres_url, f"streamends_{os.getpid()}_{time.monotonic_ns()}")


def _saver_url(db: str) -> str:
    return db.replace("postgresql+psycopg://", "postgresql://")


def _free_now(other: SQLMemory, key: str) -> bool:
    """Whether another worker can claim ``key`` right now (and gives it back)."""
    if other.claim_task(key):
        other.release_task(key)
        return True
    return False


def _status(memory: SQLMemory, task_id: str) -> str:
    memory.flush()
    stored = memory.get_task(task_id)
    assert stored is not None
    return str(stored.task.status)


def _user_graph(memory: SQLMemory, saver: Any, after: Any) -> Any:
    from langgraph.graph import START, StateGraph

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("answer", routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=4)))
    builder.add_node("after", after)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", "after")
    return ag.claiming(builder.compile(checkpointer=saver), memory)


def test_a_user_graph_astream_cancelled_mid_stream_interrupts_its_task_and_frees_the_thread(db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> tuple[str, bool]:
        entered = asyncio.Event()

        async def wait_forever(state: State) -> dict:
            entered.set()
            await asyncio.sleep(3600)
            return {}

        async with AsyncPostgresSaver.from_conn_string(_saver_url(db)) as saver:
            await saver.setup()
            app = _user_graph(memory, saver, wait_forever)
            cfg = {"configurable": {"thread_id": "cancelled"}}

            async def consume() -> None:
                async for _ in app.astream({"query": "q1", "query_id": "q1"}, cfg, stream_mode="updates"):
                    pass

            task = asyncio.create_task(consume())
            await asyncio.wait_for(entered.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            free = await asyncio.to_thread(_free_now, other, "thread:cancelled")
            task_id = (await app.aget_state(cfg)).values["agentroute_task_id"]
            return task_id, free

    with SQLMemory(db) as memory, SQLMemory(db) as other:
        task_id, free = asyncio.run(main(memory, other))
        assert free
        assert _status(memory, task_id) == "interrupted"


def test_a_user_graph_astream_left_early_interrupts_its_task_and_frees_the_thread(db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> tuple[str, bool]:
        async with AsyncPostgresSaver.from_conn_string(_saver_url(db)) as saver:
            await saver.setup()
            app = _user_graph(memory, saver, lambda s: {"note": "after"})
            cfg = {"configurable": {"thread_id": "left-async"}}
            stream = app.astream({"query": "q1", "query_id": "q1"}, cfg, stream_mode="updates")
            async for chunk in stream:
                assert "answer" in chunk
                break
            await stream.aclose()
            free = _free_now(other, "thread:left-async")  # at once: without yielding to the event loop
            return (await app.aget_state(cfg)).values["agentroute_task_id"], free

    with SQLMemory(db) as memory, SQLMemory(db) as other:
        task_id, free = asyncio.run(main(memory, other))
        assert free
        assert _status(memory, task_id) == "interrupted"


def _agent_graph(memory: SQLMemory, saver: Any) -> Any:
    graph = AgentGraph("ends").add_role("planner", prompt="plan").add_role("executor", prompt="do").add_edge("planner", "executor")
    return graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=5), checkpointer=saver)


def test_an_agent_graph_astream_left_early_gives_its_task_claim_back_at_once(db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> bool:
        async with AsyncPostgresSaver.from_conn_string(_saver_url(db)) as saver:
            await saver.setup()
            app = _agent_graph(memory, saver)
            stream = app.astream({"query": "q1", "query_id": "q1", "task_id": "t-left"}, stream_mode="updates")
            async for chunk in stream:
                assert "planner" in chunk
                break
            await stream.aclose()
            # was: the inner claimed stream was left to the garbage collector: the task stayed
            # claimed until the event loop next ran its finalizer (asked here without yielding to it)
            return _free_now(other, "t-left")

    with SQLMemory(db) as memory, SQLMemory(db) as other:
        assert asyncio.run(main(memory, other))


def test_an_agent_graph_stream_left_early_gives_its_task_claim_back(db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with SQLMemory(db) as memory, SQLMemory(db) as other, PostgresSaver.from_conn_string(_saver_url(db)) as saver:
        saver.setup()
        app = _agent_graph(memory, saver)
        stream = app.stream({"query": "q1", "query_id": "q1", "task_id": "t-sync"}, stream_mode="updates")
        for chunk in stream:
            assert "planner" in chunk
            break
        stream.close()
        assert _free_now(other, "t-sync")
        assert memory.stats()["steps"] == 1  # the planner's step, committed before the claim went back
