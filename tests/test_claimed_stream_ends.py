"""A claimed invocation's stream — ``claiming(app, memory)`` on your StateGraph, or an
``AgentGraph`` on a shared PostgreSQL memory — gives its claim back at once however its consumer
leaves: a ``break`` then ``aclose()``, or the consuming asyncio task cancelled mid-``astream``; and
the task it ran ends ``interrupted`` (stopped from outside), not ``running`` or ``failed``.

Real PostgreSQL server on loopback, real savers; ``other`` is a second memory (another worker's
session) that tries the claim.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentroute import AgentGraph, Budget, make_router
from agentroute.memory import SQLMemory
from tests.fixtures_claimed_graph import astream_cancelled_mid_node, claimable, claimed_app, task_status
from tests.fixtures_postgres import saver_url
from tests.helpers import replay_pool

pytestmark = pytest.mark.postgres


def test_a_user_graph_astream_cancelled_mid_stream_interrupts_its_task_and_frees_the_thread(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> tuple[str, bool]:
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            cfg = {"configurable": {"thread_id": "cancelled"}}
            app = await astream_cancelled_mid_node(memory, saver, cfg, stream_mode="updates")
            free = await asyncio.to_thread(claimable, other, "thread:cancelled")
            task_id = (await app.aget_state(cfg)).values["agentroute_task_id"]
            return task_id, free

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        task_id, free = asyncio.run(main(memory, other))
        assert free
        assert task_status(memory, task_id) == "interrupted"


def test_a_user_graph_astream_left_early_interrupts_its_task_and_frees_the_thread(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> tuple[str, bool]:
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            app = claimed_app(memory, saver, after=lambda s: {"note": "after"})
            cfg = {"configurable": {"thread_id": "left-async"}}
            stream = app.astream({"query": "q1", "query_id": "q1"}, cfg, stream_mode="updates")
            async for chunk in stream:
                assert "answer" in chunk
                break
            await stream.aclose()
            free = claimable(other, "thread:left-async")  # at once: without yielding to the event loop
            return (await app.aget_state(cfg)).values["agentroute_task_id"], free

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        task_id, free = asyncio.run(main(memory, other))
        assert free
        assert task_status(memory, task_id) == "interrupted"


def _agent_graph(memory: SQLMemory, saver: Any) -> Any:
    graph = AgentGraph("ends").add_role("planner", prompt="plan").add_role("executor", prompt="do").add_edge("planner", "executor")
    return graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=5), checkpointer=saver)


def test_an_agent_graph_astream_left_early_gives_its_task_claim_back_at_once(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    async def main(memory: SQLMemory, other: SQLMemory) -> bool:
        async with AsyncPostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
            await saver.setup()
            app = _agent_graph(memory, saver)
            stream = app.astream({"query": "q1", "query_id": "q1", "task_id": "t-left"}, stream_mode="updates")
            async for chunk in stream:
                assert "planner" in chunk
                break
            await stream.aclose()
            # was: the inner claimed stream was left to the garbage collector: the task stayed
            # claimed until the event loop next ran its finalizer (asked here without yielding to it)
            return claimable(other, "t-left")

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other:
        assert asyncio.run(main(memory, other))


def test_an_agent_graph_stream_left_early_gives_its_task_claim_back(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with SQLMemory(checkpoint_db) as memory, SQLMemory(checkpoint_db) as other, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = _agent_graph(memory, saver)
        stream = app.stream({"query": "q1", "query_id": "q1", "task_id": "t-sync"}, stream_mode="updates")
        for chunk in stream:
            assert "planner" in chunk
            break
        stream.close()
        assert claimable(other, "t-sync")
        assert memory.stats()["steps"] == 1  # the planner's step, committed before the claim went back
