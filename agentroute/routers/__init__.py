"""Routers: the protocol, the registry and the routers that ship with agentroute.

Light routers are imported here; heavy ones (torch, torch-geometric) are registered lazily by name
so that ``import agentroute`` stays light.
"""

from agentroute.routers import baselines as _baselines  # noqa: F401  (registers the baselines)
from agentroute.routers.base import (
    Router,
    get_router_class,
    make_router,
    register,
    register_lazy,
    router_names,
)
from agentroute.routers.baselines import (
    CascadeRouter,
    CheapestRouter,
    FixedRouter,
    RandomRouter,
    StrongestRouter,
)

__all__ = [
    "CascadeRouter",
    "CheapestRouter",
    "FixedRouter",
    "RandomRouter",
    "Router",
    "StrongestRouter",
    "get_router_class",
    "make_router",
    "register",
    "register_lazy",
    "router_names",
]

# Heavy or data-driven routers, imported on first use: name → "module:Class".
_LAZY_ROUTERS = {
    "oracle": "agentroute.routers.reference:OracleRouter",
    "best-single": "agentroute.routers.reference:BestSingleRouter",
    "per-task": "agentroute.routers.reference:PerTaskRouter",
    "knn": "agentroute.routers.knn:KNNRouter",
    "logreg": "agentroute.routers.logreg:LogisticRouter",
    "mlp": "agentroute.routers.mlp:MLPRouter",
    "mf": "agentroute.routers.mf:MatrixFactorizationRouter",
    "graph-router": "agentroute.routers.graph_router:GraphRouter",
    "kg-gnn": "agentroute.routers.kg_gnn:KGRouter",
    "ant-colony": "agentroute.routers.ant_colony:AntColonyRouter",
    "bopo": "agentroute.routers.bopo:BoPORouter",
    "always-small": "agentroute.routers.tiers:AlwaysSmallRouter",
    "always-large": "agentroute.routers.tiers:AlwaysLargeRouter",
    "first-step-large": "agentroute.routers.tiers:FirstStepLargeRouter",
    "random-mix": "agentroute.routers.tiers:RandomMixRouter",
    "graph-planner": "agentroute.routers.graph_planner.router:GraphPlannerRouter",
    "explore": "agentroute.routers.explore:ExploreRouter",
    "stack": "agentroute.routers.stack:StackRouter",
}
for _name, _target in _LAZY_ROUTERS.items():
    register_lazy(_name, _target)
