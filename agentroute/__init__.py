"""agentroute: routed multi-agent LLM pipelines under hard budgets, with learnable routers and a SQL memory.

Compose a graph of roles, give it a model pool, a router, a budget and a memory, and run tasks::

    from agentroute import AgentGraph, Budget, ModelPool, make_router

    graph = AgentGraph("qa").add_role("executor", prompt="Answer briefly.")
    app = graph.compile(pool=ModelPool.default(), router=make_router("cheapest"), budget=Budget(usd=0.001))
    result = app.run("What is the capital of France?")
    print(result.answer, result.status, result.cost_usd)

``import agentroute`` stays light: torch, transformers and torch-geometric load only when used.
"""

from agentroute.budget import Budget, Cost, Ledger
from agentroute.dispatch import Dispatcher, SkillRegistry, StageMachine, TaskRun
from agentroute.errors import (
    AgentrouteError,
    BackendError,
    BudgetExceededError,
    ConfigurationError,
    DatasetError,
    MissingDependencyError,
    NotFittedError,
    StateFileError,
    UnknownNameError,
)
from agentroute.graph import AgentGraph, CompiledAgentGraph, RunResult, routed_node
from agentroute.outcomes import OutcomeTable
from agentroute.pool import Backend, ModelCard, ModelPool, ReplayBackend
from agentroute.routers import Router, make_router, register, router_names
from agentroute.types import (
    Agent,
    AuditEvent,
    Completion,
    CompletionRequest,
    Decision,
    RouteContext,
    Step,
    Task,
    Trajectory,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentGraph",
    "AgentrouteError",
    "AuditEvent",
    "Backend",
    "BackendError",
    "Budget",
    "BudgetExceededError",
    "CompiledAgentGraph",
    "Completion",
    "CompletionRequest",
    "ConfigurationError",
    "Cost",
    "DatasetError",
    "Decision",
    "Dispatcher",
    "Ledger",
    "MissingDependencyError",
    "ModelCard",
    "ModelPool",
    "NotFittedError",
    "OutcomeTable",
    "ReplayBackend",
    "RouteContext",
    "Router",
    "RunResult",
    "SkillRegistry",
    "StageMachine",
    "StateFileError",
    "Step",
    "Task",
    "TaskRun",
    "Trajectory",
    "UnknownNameError",
    "make_router",
    "register",
    "routed_node",
    "router_names",
]
