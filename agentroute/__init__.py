"""agentroute: routed multi-agent LLM pipelines under hard budgets, with learnable routers and a SQL memory.

Compose a graph of roles, give it a model pool, a router, a budget and a memory, and run tasks::

    from agentroute import AgentGraph, Budget, ModelPool, make_router

    graph = AgentGraph("qa").add_role("executor", prompt="Answer briefly.")
    app = graph.compile(pool=ModelPool.default(), router=make_router("cheapest"), budget=Budget(usd=0.001))
    result = app.run("What is the capital of France?")
    print(result.answer, result.status, result.cost_usd)

``import agentroute`` stays light: each public name loads on first use, and torch, transformers and
torch-geometric only when a router or backend needs them.
"""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Where each public name lives. They load on first use (PEP 562), so ``import agentroute`` and
#: ``agentroute --help`` do not pay for the memory (SQLAlchemy), the dispatcher or LangGraph.
_HOME = {
    **dict.fromkeys(("Budget", "Cost", "Ledger"), "agentroute.budget"),
    **dict.fromkeys(("Dispatcher", "SkillRegistry", "StageMachine", "TaskRun"), "agentroute.dispatch"),
    **dict.fromkeys(
        (
            "AgentrouteError", "BackendError", "BudgetExceededError", "ConfigurationError", "DatasetError",
            "MissingDependencyError", "NotFittedError", "StateFileError", "UnknownNameError",
        ),
        "agentroute.errors",
    ),
    **dict.fromkeys(("AgentGraph", "CompiledAgentGraph", "RunResult", "claiming", "routed_node"), "agentroute.graph"),
    "OutcomeTable": "agentroute.outcomes",
    **dict.fromkeys(("Backend", "ModelCard", "ModelPool", "ReplayBackend"), "agentroute.pool"),
    **dict.fromkeys(("Router", "make_router", "register", "router_names"), "agentroute.routers"),
    **dict.fromkeys(
        (
            "Agent", "AuditEvent", "Completion", "CompletionRequest", "Decision", "RouteContext", "Step",
            "Task", "Trajectory",
        ),
        "agentroute.types",
    ),
}  # fmt: skip

if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports
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
    from agentroute.graph import AgentGraph, CompiledAgentGraph, RunResult, claiming, routed_node
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


if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name is still an error there

    def __getattr__(name: str) -> Any:
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module 'agentroute' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # the next access is a plain attribute
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


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
    "claiming",
    "make_router",
    "register",
    "routed_node",
    "router_names",
]
