"""Router-R1's think/route loop, loadable by path (``graphs/router_r1.py:graph``).

The definition ships inside the package (``agentroute.routers.router_r1``); this file is the
by-path entry point. ``graph`` builds the graph with the default policy (the pool's local
SmolLM2); ``build_router_r1_graph(policy=DIR)`` uses a trained checkpoint.
"""

from agentroute.routers.router_r1.graph import build_router_r1_graph, graph

__all__ = ["build_router_r1_graph", "graph"]
