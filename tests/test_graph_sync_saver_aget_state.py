"""``aget_state`` of a compiled agent graph under a sync-only saver (``SqliteSaver``,
``PostgresSaver``): what a notebook user awaits right after ``aupdate_state`` or ``arun`` works as
those do (LangGraph's sync method off the event loop) instead of raising LangGraph's
``NotImplementedError``. One ``asyncio.run``, as in a Jupyter cell; real LangGraph, real SQLite.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agentroute import AgentGraph, Budget, make_router
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool


def test_aget_state_works_under_a_sync_saver(tmp_path: Path) -> None:
    pytest.importorskip("langgraph.checkpoint.sqlite", reason="pip install 'agentroute[checkpoint]'")
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
    try:
        with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory:
            app = AgentGraph("edited").add_role("executor", prompt="do").compile(
                pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=2),
                checkpointer=SqliteSaver(conn),
            )

            async def cell() -> tuple[str, str]:
                done = await app.arun("x", query_id="q1")
                cfg = {"configurable": {"thread_id": done.task.id}}
                await app.aupdate_state(cfg, {"answer": "by hand"})
                snapshot = await app.aget_state(cfg)  # was: NotImplementedError (SqliteSaver has no async methods)
                return snapshot.values["answer"], (await app.aresume(cfg)).task.id == done.task.id and "same task"

            assert asyncio.run(cell()) == ("by hand", "same task")
    finally:
        conn.close()


def test_aget_state_history_works_under_a_sync_saver(tmp_path: Path) -> None:
    pytest.importorskip("langgraph.checkpoint.sqlite", reason="pip install 'agentroute[checkpoint]'")
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
    try:
        app = AgentGraph("edited").add_role("executor", prompt="do").compile(
            pool=replay_pool(), router=make_router("cheapest"), budget=Budget(calls=2), checkpointer=SqliteSaver(conn)
        )
        done = app.run("x", query_id="q1")
        cfg = {"configurable": {"thread_id": done.task.id}}

        async def cell() -> list[str | None]:  # was: NotImplementedError at the first item
            return [s.config["configurable"]["checkpoint_id"] async for s in app.aget_state_history(cfg, limit=2)]

        assert asyncio.run(cell()) == [s.config["configurable"]["checkpoint_id"] for s in app.get_state_history(cfg, limit=2)]
    finally:
        conn.close()
