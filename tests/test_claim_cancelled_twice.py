"""A claimed ``astream`` cancelled twice — once, then again while it gives its claim back — still
gives the thread's claim back, also when the event loop's default executor is busy (sync nodes,
``to_thread`` work of the app). Before, the claim's end was a job queued in that executor, which the
second cancel dropped before it started: the thread stayed claimed (``TaskBusyError`` for every
worker) until the process exited.

Real PostgreSQL server on loopback, real ``AsyncPostgresSaver``; ``other`` is a second worker's memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import time
from typing import Any

import pytest

import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool

pytestmark = pytest.mark.postgres


class State(ag.AgentrouteState, total=False):
    query: str
    query_id: str
    answer: str


class _Busy(concurrent.futures.ThreadPoolExecutor):
    """The default executor, busy for agentroute's jobs: they wait in its queue, not started, until
    :meth:`drain` (as behind a user's long ``to_thread`` calls); other jobs (the saver's) run."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.queued: list[tuple[concurrent.futures.Future[Any], Any]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        func = fn.args[0] if isinstance(fn, functools.partial) and fn.args else fn  # to_thread: partial(ctx.run, func)
        if not getattr(func, "__module__", "").startswith("agentroute"):
            return super().submit(fn, *args, **kwargs)
        job: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.queued.append((job, functools.partial(fn, *args, **kwargs)))
        return job

    def drain(self) -> None:
        for job, fn in self.queued:
            if job.set_running_or_notify_cancel():  # what a worker thread does: a cancelled job is skipped
                job.set_result(fn())


def _free_now(other: SQLMemory, key: str) -> bool:
    if other.claim_task(key):
        other.release_task(key)
        return True
    return False


def test_astream_cancelled_twice_on_a_busy_executor_gives_the_thread_back(postgres_url: str) -> None:
    pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.graph import START, StateGraph

    from agentroute.memory.pgserver import create_database

    db = create_database(postgres_url, f"cancel2_{os.getpid()}_{time.monotonic_ns()}")

    async def main(memory: SQLMemory, other: SQLMemory) -> bool:
        entered = asyncio.Event()

        async def wait_forever(state: State) -> dict:
            entered.set()
            await asyncio.sleep(3600)
            return {}

        async with AsyncPostgresSaver.from_conn_string(db.replace("postgresql+psycopg://", "postgresql://")) as saver:
            await saver.setup()
            dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
            builder = StateGraph(State)
            builder.add_node("answer", routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=2)))
            builder.add_node("wait", wait_forever)
            builder.add_edge(START, "answer")
            builder.add_edge("answer", "wait")
            app = ag.claiming(builder.compile(checkpointer=saver), memory)

            async def consume() -> None:
                async for _ in app.astream({"query": "q1", "query_id": "q1"}, {"configurable": {"thread_id": "twice"}}):
                    pass

            task = asyncio.create_task(consume())
            await asyncio.wait_for(entered.wait(), 30)
            executor = _Busy()
            asyncio.get_running_loop().set_default_executor(executor)
            task.cancel()
            for _ in range(400):  # until the claim's end is queued (was) or done (now)
                if executor.queued or task.done():
                    break
                await asyncio.sleep(0.005)
            task.cancel()  # again, while the claim goes back
            with pytest.raises(asyncio.CancelledError):
                await task
            executor.drain()
            for _ in range(100):
                if await asyncio.to_thread(_free_now, other, "thread:twice"):
                    return True
                await asyncio.sleep(0.02)
            return False

    with SQLMemory(db) as memory, SQLMemory(db) as other:
        assert asyncio.run(main(memory, other))  # was: False, the thread claimed until the process exited
