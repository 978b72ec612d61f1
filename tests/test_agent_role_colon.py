"""A role holding ``:`` is refused where it is given, before any call is paid.

An agent's key is ``role:model:strategy``, and a model id may hold colons (``ollama:llama3:8b``):
the key is read back on its first ``:`` for the role (the reconcile's settling of a call in flight,
:mod:`agentroute.memory.settle`, and the routers). A role ``plan:a`` given to ``routed_node`` (a
graph's ``add_role`` is a LangGraph node, which refuses ``:`` itself) was run and paid, and a call of
it left in flight at a kill was stored as role ``plan``, model ``a:ollama:llama3:8b``. Now the role is
refused with one line naming it, before the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from agentroute.budget import Attempt, Cost
from agentroute.dispatch import Dispatcher
from agentroute.errors import ConfigurationError
from agentroute.graph_runtime import routed_node
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from agentroute.types import Agent
from tests.test_batch_server import StubOpenAIServer, pool_yaml

MODEL = "ollama:llama3:8b"


class State(TypedDict, total=False):
    query: str
    answer: str


def test_a_routed_node_whose_role_holds_a_colon_is_refused_before_its_call(tmp_path: Path) -> None:
    with StubOpenAIServer() as provider:
        (tmp_path / "pool.yaml").write_text(pool_yaml(provider.url, model=MODEL))
        dispatcher = Dispatcher(ModelPool.load(tmp_path / "pool.yaml"), CheapestRouter())
        with pytest.raises(ConfigurationError, match=r"^role 'plan:a' holds ':'.*use '-' or '\.'"):
            routed_node(dispatcher, role="plan:a", prompt="Plan.")  # where the graph is built
        builder = StateGraph(State)
        builder.add_node("answer", routed_node(dispatcher, role="plan-a", prompt="Plan."))
        builder.add_edge(START, "answer")
        builder.add_edge("answer", END)
        builder.compile().invoke({"query": "q?"})
        assert len(provider.answered) == 1  # the same node with a plain role runs


async def test_a_dispatcher_step_whose_role_holds_a_colon_is_refused_before_its_call(tmp_path: Path) -> None:
    with StubOpenAIServer() as provider:
        (tmp_path / "pool.yaml").write_text(pool_yaml(provider.url, model=MODEL))
        dispatcher = Dispatcher(ModelPool.load(tmp_path / "pool.yaml"), CheapestRouter())
        run = dispatcher.start("q?")
        with pytest.raises(ConfigurationError, match="role 'x:y' holds ':'"):
            await dispatcher.step(run, role="x:y", stage="s", prompt="", input="q?")
        assert provider.answered == [] and run.ledger.spent["calls"] == 0  # was: the call was made and paid


def test_a_call_in_flight_is_settled_as_its_agent_when_the_model_id_holds_colons() -> None:
    from agentroute.memory.settle import settling_steps

    agent = Agent(role="plan-a", model=MODEL, strategy="sc@3")
    worst = Cost(usd=0.001, tokens=100, calls=1, seconds=0.0, large_calls=0)
    attempts = [Attempt("t1", 0, k, agent.key, "plan", worst) for k in range(2)]
    (step,) = settling_steps(attempts)
    assert step.agent == agent and step.cost_usd == pytest.approx(0.002) and step.status == "failed"


def test_a_step_stored_before_roles_were_refused_a_colon_still_reads_back(tmp_path: Path) -> None:
    """Logs written before the check (a ``routed_node(role="plan:a")`` of an older version) stay
    readable: export, training and ``memory show`` read them as they were stored."""
    from agentroute.memory import SQLMemory
    from agentroute.types import Step, Task

    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:
        memory.start_task(Task(id="t", query="q", graph="g"))
        memory.record_step(Step(task_id="t", index=0, stage="s", agent=Agent(role="plan-a", model=MODEL), output="o"))
        memory.flush()
        with memory.engine.begin() as conn:  # as an older version stored it
            conn.exec_driver_sql("UPDATE steps SET role = 'plan:a'")
        [step] = memory.get_task("t").steps
    assert (step.agent.role, step.agent.model) == ("plan:a", MODEL)


def test_a_graph_role_holding_a_colon_is_refused_where_it_is_added() -> None:
    """Was LangGraph's raw ValueError at compile time."""
    from agentroute.graph import AgentGraph

    with pytest.raises(ConfigurationError, match="role 'plan:a' holds ':'"):
        AgentGraph("g").add_role("plan:a", prompt="Plan.")
