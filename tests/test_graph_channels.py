"""The state's fast dict channels (dec701f) against checkpoints, ``update_state`` and LangGraph's layout.

A thread checkpointed by a graph whose dict channels are LangGraph's own ``BinaryOperatorAggregate``
(the code before dec701f) resumes on the fast ones, on a real SQLite saver, with the same task,
ledger and budget; ``update_state`` merges as LangGraph's channel does; and where a LangGraph
upgrade changes the aggregate's layout, the fast class is not made (the graph keeps LangGraph's).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from langgraph.channels.binop import BinaryOperatorAggregate

from agentroute import AgentGraph, Budget, make_router
from agentroute.dispatch.run import LIVE
from agentroute.graph import _fresh_dict_aggregate, _fresh_dict_class
from tests.helpers import replay_pool

DICT_CHANNELS = ("outputs", "context", "agentroute")


def three_roles(saver: Any) -> Any:
    g = AgentGraph("h55")
    for role in ("planner", "executor", "summarizer"):
        g.add_role(role, prompt=role)
    g.add_edge("planner", "executor").add_edge("executor", "summarizer")
    return g.compile(pool=replay_pool(), router=make_router("cheapest"), checkpointer=saver,
                     interrupt_before=["executor"], budget=Budget(usd=5.0))


def with_langgraphs_channels(app: Any) -> Any:
    """``app`` as it was compiled before dec701f: LangGraph's own dict channels."""
    for key in DICT_CHANNELS:
        fast = app.channels[key]
        plain = app.channels[key] = BinaryOperatorAggregate(fast.typ, fast.operator)
        plain.key = fast.key
    return app


@pytest.fixture
def sqlite_saver(tmp_path: Any) -> Any:
    pytest.importorskip("langgraph.checkpoint.sqlite", reason="pip install 'agentroute[checkpoint]'")
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
    yield SqliteSaver(conn)
    conn.close()


def test_a_thread_checkpointed_with_langgraphs_channels_resumes_on_the_fast_ones(sqlite_saver: Any) -> None:
    config = {"configurable": {"thread_id": "t-old"}}
    old = with_langgraphs_channels(three_roles(sqlite_saver))
    assert all(type(old.channels[k]) is BinaryOperatorAggregate for k in DICT_CHANNELS)
    old.invoke({"query": "What is 2+2?", "query_id": "q1"}, config)
    paused = old.get_state(config).values
    LIVE.drop(paused["agentroute"]["task_id"])  # a new process: the task is rebuilt from the checkpoint

    new = three_roles(sqlite_saver)
    assert all(type(new.channels[k]) is _fresh_dict_aggregate() for k in DICT_CHANNELS)
    assert new.get_state(config).values == paused
    final = new.invoke(None, config)
    assert set(final["outputs"]) == {"planner", "executor", "summarizer"} and final["status"] == "done"
    assert final["agentroute"]["task_id"] == paused["agentroute"]["task_id"]
    spent_before, spent_after = paused["agentroute"]["ledger"]["spent"], final["agentroute"]["ledger"]["spent"]
    assert spent_after[0] >= spent_before[0] and final["agentroute"]["ledger"]["budget"] == {"usd": 5.0}


def test_update_state_merges_into_the_fast_channels_as_into_langgraphs(sqlite_saver: Any) -> None:
    states = []
    for thread, app in (("t-plain", with_langgraphs_channels(three_roles(sqlite_saver))), ("t-fast", three_roles(sqlite_saver))):
        config = {"configurable": {"thread_id": thread}}
        app.invoke({"query": "What is 2+2?", "query_id": "q1"}, config)
        app.update_state(config, {"outputs": {"note": "added by hand"}, "context": {"k": 1}})
        values = app.get_state(config).values
        states.append((values["outputs"], values["context"]))
    assert states[0] == states[1] and states[1][0]["note"] == "added by hand" and "planner" in states[1][0]


def test_the_fast_class_is_made_only_for_the_layout_it_knows() -> None:
    """A LangGraph whose aggregate holds one more attribute (or an instance dict) keeps its own
    channels: a fresh channel built from the four known ones would lack it."""

    class OneMoreSlot(BinaryOperatorAggregate):  # type: ignore[misc]
        __slots__ = ("history",)

        def __init__(self, typ: Any, operator: Any) -> None:
            super().__init__(typ, operator)
            self.history: list[Any] = []

    class WithADict(BinaryOperatorAggregate):  # type: ignore[misc]
        pass

    assert _fresh_dict_class(OneMoreSlot) is None and _fresh_dict_class(WithADict) is None
    assert issubclass(_fresh_dict_class(BinaryOperatorAggregate), BinaryOperatorAggregate)
