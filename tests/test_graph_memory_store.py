"""A compiled graph with a durable checkpointer commits the memory before each checkpoint; a
:class:`MemoryStore` of the base interface (no ``aflush``, only ``SQLMemory`` has one) works too."""

from __future__ import annotations

import pytest

from agentroute import AgentGraph, Budget, make_router
from agentroute.memory import SQLMemory
from agentroute.memory.base import MemoryStore
from tests.helpers import replay_pool


def _forward(name: str):
    def method(self, *args, **kwargs):
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


def _flush(self) -> None:
    self.flushes += 1
    self.inner.flush()


def _init(self, inner: SQLMemory) -> None:
    self.inner, self.flushes = inner, 0


# the abstract methods only, each answered by a real SQLMemory: no aflush, no other extras
BaseOnlyMemory = type(
    "BaseOnlyMemory",
    (MemoryStore,),
    {"__init__": _init, "flush": _flush, **{n: _forward(n) for n in MemoryStore.__abstractmethods__ - {"flush"}}},
)


async def test_a_memory_store_without_aflush_under_an_async_durable_saver(tmp_path):
    pytest.importorskip("aiosqlite", reason="pip install 'agentroute[checkpoint]'")
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    inner = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    memory = BaseOnlyMemory(inner)
    assert not hasattr(memory, "aflush")
    graph = AgentGraph("two").add_role("planner", prompt="plan").add_role("executor", prompt="do")
    graph.add_edge("planner", "executor")
    try:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            app = graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory,
                                budget=Budget(usd=1.0), checkpointer=saver)
            result = await app.arun("x", query_id="q2")
        assert result.status == "done", result
        assert memory.flushes >= 2  # committed before each routed step's checkpoint
        inner.flush()
        recorded = inner.get_task(result.task.id)
        assert recorded is not None and len(recorded.steps) == 2
    finally:
        inner.close()
