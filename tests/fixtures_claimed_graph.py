"""A user's StateGraph with one routed node, as the claimed-graph tests build it, and what they ask
of the shared memory afterwards.

The graph is ``START → [before] → answer → [after]``: ``answer`` is a routed executor node on
:func:`~tests.helpers.replay_pool` under the ``cheapest`` router, so query ``q1`` is answered
``small says 1``. Pair these with the ``checkpoint_db`` fixture and :func:`saver_url` of
``tests/fixtures_postgres.py``; ``other`` below is a second memory (its own session, as another
worker process has) that tries a claim.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import agentroute.graph as ag
from agentroute import Budget, Dispatcher, make_router, routed_node
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool


class State(ag.AgentrouteState, total=False):
    """The graph's state: the routed node reads ``query`` and writes ``answer``; ``note`` and ``n``
    are for the nodes a test adds."""

    query: str
    query_id: str
    answer: str
    note: str
    n: int


def answer_graph(memory: SQLMemory, *, before: Any = None, after: Any = None, loop: bool = False,
                 calls: int = 4, **node_options: Any) -> Any:
    """The uncompiled ``StateGraph``: ``START → [before] → answer → [after]``, ``after`` looping on
    itself when ``loop``; ``answer`` has a budget of ``calls`` and takes ``node_options`` (e.g.
    ``output=``, ``require_claim=``) as :func:`~agentroute.routed_node` does."""
    from langgraph.graph import START, StateGraph

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("answer", routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=calls), **node_options))
    last = START
    if before is not None:
        builder.add_node("before", before)
        builder.add_edge(START, "before")
        last = "before"
    builder.add_edge(last, "answer")
    if after is not None:
        builder.add_node("after", after)
        builder.add_edge("answer", "after")
        if loop:
            builder.add_edge("after", "after")
    return builder


def claimed_app(memory: SQLMemory, saver: Any, **graph: Any) -> Any:
    """:func:`answer_graph` (``graph`` its options) compiled on ``saver`` and wrapped by
    ``claiming(app, memory)``."""
    return ag.claiming(answer_graph(memory, **graph).compile(checkpointer=saver), memory)


async def astream_cancelled_mid_node(memory: SQLMemory, saver: Any, cfg: dict[str, Any], **stream: Any) -> Any:
    """A :func:`claimed_app` whose ``after`` node never returns, run by an asyncio task consuming
    its ``astream(…, cfg, **stream)`` that is cancelled once that node has begun (a client gone
    mid-answer); returns the app."""
    entered = asyncio.Event()

    async def wait_forever(state: State) -> dict:
        entered.set()
        await asyncio.sleep(3600)
        return {}

    app = claimed_app(memory, saver, after=wait_forever)

    async def consume() -> None:
        async for _ in app.astream({"query": "q1", "query_id": "q1"}, cfg, **stream):
            pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(entered.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return app


def claimable(other: SQLMemory, key: str, within_s: float = 0.0) -> bool:
    """Whether ``other`` can claim the task ``key`` (a thread's is ``thread:<id>``) at once, or by
    trying for ``within_s``; a claim it gets it gives straight back."""
    deadline = time.monotonic() + within_s
    while True:
        if other.claim_task(key):
            other.release_task(key)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def task_status(memory: SQLMemory, task_id: str) -> str:
    """The stored status of task ``task_id`` (``done``, ``failed``, ``interrupted``…), after a flush."""
    memory.flush()
    stored = memory.get_task(task_id)
    assert stored is not None
    return str(stored.task.status)
