"""``aupdate_state`` / ``abulk_update_state`` of a compiled agent graph under the checkpointers users
pass: a sync-only saver (``SqliteSaver``, ``PostgresSaver``) works as ``arun``/``aresume`` do (LangGraph's sync method,
off the event loop) instead of raising LangGraph's ``NotImplementedError``; ``InMemorySaver`` (which
has async methods) goes on taking the async path. Real LangGraph, real SQLite files and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph.types import StateUpdate

from agentroute import AgentGraph, Budget, make_router
from agentroute.memory import SQLMemory
from tests.fixtures_postgres import sync_saver
from tests.helpers import replay_pool


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
def test_async_state_edits_work_with_the_saver_users_pass(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> None:
    with SQLMemory(f"sqlite:///{tmp_path}/memory.db") as memory, sync_saver(kind, tmp_path, request) as checkpointer:
        graph = AgentGraph("edited").add_role("executor", prompt="do")
        app = graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory,
                            budget=Budget(calls=2), checkpointer=checkpointer)  # fmt: skip
        done = app.run("x", query_id="q1")
        cfg = {"configurable": {"thread_id": done.task.id}}
        # was (SqliteSaver): NotImplementedError from LangGraph's async saver methods
        asyncio.run(app.aupdate_state(cfg, {"answer": "by hand"}))
        assert app.get_state(cfg).values["answer"] == "by hand"
        asyncio.run(app.abulk_update_state(cfg, [[StateUpdate({"answer": "in bulk"}, None)]]))
        assert app.get_state(cfg).values["answer"] == "in bulk"
        resumed = app.resume(cfg)  # the edited thread still holds its task
        assert resumed.task.id == done.task.id
