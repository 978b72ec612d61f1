"""Routed nodes of YOUR StateGraph in a real Jupyter kernel (ipykernel via jupyter_client), cell by
cell: sync ``invoke``/``stream`` on the kernel's running loop, top-level ``await``, and a human
reviewing a routed answer with ``interrupt()`` between two cells — paid once either way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client")

from tests.test_notebook_user_paths import Kernel  # noqa: E402

SETUP = """
import json
from langgraph.graph import START, StateGraph
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import interrupt, Command
from agentroute import Budget, Dispatcher, make_router, routed_node
import agentroute.graph as ag
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool

class State(ag.AgentrouteState):
    query: str
    query_id: str
    answer: str

memory = SQLMemory("sqlite:///memory.db")
dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)

def review(text):
    return {"answer": text if interrupt({"draft": text}) == "ok" else "rejected"}

builder = StateGraph(State)
builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="e", output=review, budget=Budget(calls=1)))
builder.add_edge(START, "draft")
app = builder.compile(checkpointer=InMemorySaver())

def paid(out):
    memory.flush()
    steps = memory.get_task(out["agentroute"]["task_id"]).steps
    return {"answer": out.get("answer"), "calls": out["agentroute"]["ledger"]["spent"][2], "steps": len(steps)}
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("usergraph-notebook"))
    try:
        k.value(SETUP + "\nprint(json.dumps('ready'))", timeout=60)
        yield k
    finally:
        k.close()


def test_a_review_paused_in_one_cell_and_answered_in_the_next_with_sync_invoke(kernel):
    paused = kernel.value("""
cfg = {"configurable": {"thread_id": "sync"}}
out = app.invoke({"query": "q1", "query_id": "q1"}, cfg)      # on the kernel's running loop
print(json.dumps([i.value for i in out["__interrupt__"]]))
""")
    assert paused == [{"draft": "small says 1"}]
    # was: the resumed node paid again, refused by the 1-call budget: no answer
    assert kernel.value('print(json.dumps(paid(app.invoke(Command(resume="ok"), cfg))))') == {
        "answer": "small says 1", "calls": 1, "steps": 1}


def test_a_review_with_top_level_await_and_async_streaming(kernel):
    modes = kernel.value("""
cfg = {"configurable": {"thread_id": "async"}}
modes = [m async for m, _ in app.astream({"query": "q3", "query_id": "q3"}, cfg, stream_mode=["messages", "custom", "updates"])]
print(json.dumps(modes))
""")
    assert "messages" in modes and "custom" in modes and modes[-1] == "updates"  # the answer, then the pause
    assert kernel.value('print(json.dumps(paid(await app.ainvoke(Command(resume="ok"), cfg))))') == {
        "answer": "small says 3", "calls": 1, "steps": 1}
