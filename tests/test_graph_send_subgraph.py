"""LangGraph's map-reduce into an agent graph: a user's ``StateGraph`` whose conditional edge returns
a list of ``Send`` to a node that is a compiled :class:`AgentGraph` (``app.as_node``)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from agentroute import AgentGraph, Budget, make_router
from agentroute.errors import ConfigurationError
from agentroute.graph import AgentrouteState
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool


class Questions(TypedDict, total=False):
    questions: list[str]
    answers: Annotated[list[str], operator.add]


class Shared(AgentrouteState, total=False):  # keys the agent graph has too: query, answer, status
    questions: list[str]
    answers: Annotated[list[str], operator.add]
    query: str
    answer: str
    status: str


@pytest.fixture
def memory(tmp_path):
    store = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    yield store
    store.close()


def _qa(memory: SQLMemory | None = None):
    graph = AgentGraph("qa").add_role("executor", prompt="Answer.")
    return graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=2))


def _fan_out(state: dict[str, Any]) -> list[Send]:
    return [Send("qa", {"query": q, "query_id": f"q{i}"}) for i, q in enumerate(state["questions"])]


def _parent(schema: type, node: Any):
    builder = StateGraph(schema)
    builder.add_node("qa", node)
    builder.add_conditional_edges(START, _fan_out, ["qa"])
    builder.add_edge("qa", END)
    return builder.compile()


@pytest.mark.parametrize("schema", [Questions, Shared], ids=["own-keys", "shared-keys"])
@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
def test_send_branches_into_an_agent_graph_each_run_a_task_and_collect_the_answers(memory, schema, path):
    qa = _qa(memory)
    app = _parent(schema, qa.as_node(output=lambda final: {"answers": [final["answer"]]}))
    inp = {"questions": ["a?", "b?", "c?"]}
    out = app.invoke(inp) if path == "invoke" else asyncio.run(app.ainvoke(inp))
    assert sorted(out["answers"]) == ["small says 0", "small says 1", "small says 2"]
    memory.flush()
    stats = memory.stats()
    assert stats["tasks_total"] == 3 and stats["steps"] == 3  # a task (and budget) of its own per branch
    tasks = memory.trajectories(graph="qa")
    assert sorted(t.task.query for t in tasks) == ["a?", "b?", "c?"]
    assert {t.task.status for t in tasks} == {"done"}


def test_input_maps_the_payload_and_a_bad_output_is_named():
    qa = _qa()
    node = qa.as_node(input=lambda s: {"query": s["question"], "query_id": "q4"},
                      output=lambda final: {"answers": [final["answer"].upper()]})
    builder = StateGraph(Questions)
    builder.add_node("qa", node)
    builder.add_conditional_edges(START, lambda s: [Send("qa", {"question": q}) for q in s["questions"]], ["qa"])
    assert builder.compile().invoke({"questions": ["x", "y"]})["answers"] == ["SMALL SAYS 4"] * 2
    bad = _parent(Questions, qa.as_node(output=lambda final: final["answer"]))
    with pytest.raises(ConfigurationError, match="node 'qa': output returned str"):
        bad.invoke({"questions": ["a?"]})
    with pytest.raises(ConfigurationError, match="as_node"):
        qa.as_node(output="answers")  # type: ignore[arg-type]

