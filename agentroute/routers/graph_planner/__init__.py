"""GraphPlanner ("Graph Memory-Augmented Agentic Routing for Multi-Agent LLMs"): the workflow of
each query built step by step — plan, execute, summarise — by a PPO policy over (role, agent),
with GARNet memory read from agentroute's SQL interaction memory.

- :mod:`.mdp` — the tree of sub-queries and the stage machine's rules (pure Python);
- :mod:`.memory` — the historical memory's rows, read from a :class:`~agentroute.memory.base.MemoryStore`;
- :mod:`.policy` — the actor–critic with GARNet aggregation (torch);
- :mod:`.env` — the offline environment over logged outcomes, and the decision features;
- :mod:`.trainer` — rollouts and the PPO loop (:mod:`agentroute.training.ppo`);
- :mod:`.router` — :class:`GraphPlannerRouter` (registered as ``graph-planner``);
- :mod:`.graph` — the LangGraph planner graph (``graphs/planner.py``);
- :mod:`.live` — the response cache kept in the interaction memory;
- :mod:`.live_env` — the live environment: MCQ questions on the local pool, fixed workflows, live PPO.

The torch parts load when the router fits, decides or loads its weights: importing the package or
:mod:`.router` and building a router (checking its parameters) are light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GraphPlannerRouter", "build_planner_graph"]


def __getattr__(name: str) -> Any:
    if name == "GraphPlannerRouter":
        from agentroute.routers.graph_planner.router import GraphPlannerRouter

        return GraphPlannerRouter
    if name == "build_planner_graph":
        from agentroute.routers.graph_planner.graph import build_planner_graph

        return build_planner_graph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
