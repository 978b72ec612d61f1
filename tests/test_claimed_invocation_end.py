"""A user's StateGraph run through ``claiming(app, memory)``: an invocation that raises after its
routed node (a plain node's error, LangGraph's ``GraphRecursionError``) ends the task ``failed``;
one stopped from outside (a stream left early) ends it ``interrupted`` (helper-69, item 2)."""

from __future__ import annotations

from typing import Any

import pytest

from agentroute.memory import SQLMemory
from tests.fixtures_claimed_graph import State, claimed_app, task_status
from tests.fixtures_postgres import saver_url

pytestmark = pytest.mark.postgres


def _thread_status(memory: SQLMemory, app: Any, cfg: dict[str, Any]) -> str:
    """The stored status of the task that ran the thread of ``cfg``."""
    return task_status(memory, app.get_state(cfg).values["agentroute_task_id"])


def test_an_invocation_that_raises_after_the_routed_node_fails_its_task(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    def broken(state: State) -> dict:
        raise RuntimeError("a tool failed")

    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, after=broken)
        cfg = {"configurable": {"thread_id": "raises"}}
        with pytest.raises(RuntimeError, match="a tool failed"):
            app.invoke({"query": "q1", "query_id": "q1"}, cfg)
        assert _thread_status(memory, app, cfg) == "failed"  # was: done (as after the routed node)


def test_graph_recursion_error_fails_the_task(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.errors import GraphRecursionError

    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, after=lambda s: {"n": s.get("n", 0) + 1}, loop=True)
        cfg = {"configurable": {"thread_id": "loops"}, "recursion_limit": 4}
        with pytest.raises(GraphRecursionError):
            app.invoke({"query": "q2", "query_id": "q2"}, cfg)
        assert _thread_status(memory, app, {"configurable": {"thread_id": "loops"}}) == "failed"


def test_a_stream_left_early_interrupts_the_task_and_a_clean_one_is_done(checkpoint_db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        app = claimed_app(memory, saver, after=lambda s: {"n": 1})
        cfg = {"configurable": {"thread_id": "clean"}}
        app.invoke({"query": "q3", "query_id": "q3"}, cfg)
        assert _thread_status(memory, app, cfg) == "done"
        cfg = {"configurable": {"thread_id": "left"}}
        stream = app.stream({"query": "q4", "query_id": "q4"}, cfg, stream_mode="updates")
        for chunk in stream:
            if "answer" in chunk:
                break
        stream.close()
        assert _thread_status(memory, app, cfg) == "interrupted"
