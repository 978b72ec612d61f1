"""A user's StateGraph run through ``claiming(app, memory)``: an invocation that raises after its
routed node (a plain node's error, LangGraph's ``GraphRecursionError``) ends the task ``failed``;
one stopped from outside (a stream left early) ends it ``interrupted`` (helper-69, item 2)."""

from __future__ import annotations

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
    n: int


@pytest.fixture
def db(postgres_url: str) -> str:
    from agentroute.memory.pgserver import create_database

    pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
    return create_database(postgres_url, f"h69_{os.getpid()}_{time.monotonic_ns()}")


def _saver_url(db: str) -> str:
    return db.replace("postgresql+psycopg://", "postgresql://")


def _status(memory: SQLMemory, app: Any, cfg: dict[str, Any]) -> str:
    memory.flush()
    task_id = app.get_state(cfg).values["agentroute_task_id"]
    stored = memory.get_task(task_id)
    assert stored is not None
    return str(stored.task.status)


def _app(memory: SQLMemory, saver: Any, after: Any, *, loop: bool = False) -> Any:
    from langgraph.graph import START, StateGraph

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(State)
    builder.add_node("answer", routed_node(dispatcher, role="executor", prompt="e", budget=Budget(calls=4)))
    builder.add_node("after", after)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", "after")
    if loop:
        builder.add_edge("after", "after")
    return ag.claiming(builder.compile(checkpointer=saver), memory)


def test_an_invocation_that_raises_after_the_routed_node_fails_its_task(db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    def broken(state: State) -> dict:
        raise RuntimeError("a tool failed")

    with SQLMemory(db) as memory, PostgresSaver.from_conn_string(_saver_url(db)) as saver:
        saver.setup()
        app = _app(memory, saver, broken)
        cfg = {"configurable": {"thread_id": "raises"}}
        with pytest.raises(RuntimeError, match="a tool failed"):
            app.invoke({"query": "q1", "query_id": "q1"}, cfg)
        assert _status(memory, app, cfg) == "failed"  # was: done (as after the routed node)


def test_graph_recursion_error_fails_the_task(db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.errors import GraphRecursionError

    with SQLMemory(db) as memory, PostgresSaver.from_conn_string(_saver_url(db)) as saver:
        saver.setup()
        app = _app(memory, saver, lambda s: {"n": s.get("n", 0) + 1}, loop=True)
        cfg = {"configurable": {"thread_id": "loops"}, "recursion_limit": 4}
        with pytest.raises(GraphRecursionError):
            app.invoke({"query": "q2", "query_id": "q2"}, cfg)
        assert _status(memory, app, {"configurable": {"thread_id": "loops"}}) == "failed"


def test_a_stream_left_early_interrupts_the_task_and_a_clean_one_is_done(db: str) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with SQLMemory(db) as memory, PostgresSaver.from_conn_string(_saver_url(db)) as saver:
        saver.setup()
        app = _app(memory, saver, lambda s: {"n": 1})
        cfg = {"configurable": {"thread_id": "clean"}}
        app.invoke({"query": "q3", "query_id": "q3"}, cfg)
        assert _status(memory, app, cfg) == "done"
        cfg = {"configurable": {"thread_id": "left"}}
        stream = app.stream({"query": "q4", "query_id": "q4"}, cfg, stream_mode="updates")
        for chunk in stream:
            if "answer" in chunk:
                break
        stream.close()
        assert _status(memory, app, cfg) == "interrupted"
