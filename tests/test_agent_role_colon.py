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
        builder = StateGraph(State)
        builder.add_node("answer", routed_node(dispatcher, role="plan:a", prompt="Plan."))
        builder.add_edge(START, "answer")
        builder.add_edge("answer", END)
        with pytest.raises(ConfigurationError, match=r"^role 'plan:a' holds ':'.*use '-' or '\.'"):
            builder.compile().invoke({"query": "q?"})
        assert provider.answered == []  # was: the call was made and paid


def test_an_agent_update_to_a_role_with_a_colon_is_refused() -> None:
    agent = Agent(role="plan", model=MODEL)
    with pytest.raises(ConfigurationError, match="role 'x:y' holds ':'"):
        agent.model_copy(update={"role": "x:y"})
    assert agent.model_copy(update={"role": "plan-a"}).key == f"plan-a:{MODEL}:direct"


def test_a_call_in_flight_is_settled_as_its_agent_when_the_model_id_holds_colons() -> None:
    from agentroute.memory.settle import settling_steps

    agent = Agent(role="plan-a", model=MODEL, strategy="sc@3")
    worst = Cost(usd=0.001, tokens=100, calls=1, seconds=0.0, large_calls=0)
    attempts = [Attempt("t1", 0, k, agent.key, "plan", worst) for k in range(2)]
    (step,) = settling_steps(attempts)
    assert step.agent == agent and step.cost_usd == pytest.approx(0.002) and step.status == "failed"
