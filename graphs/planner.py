"""GraphPlanner's dynamic workflow, loadable by path (``graphs/planner.py:graph``).

The definition ships inside the package (``agentroute.routers.graph_planner.graph``); this file is
the by-path entry point::

    agentroute ask "…" --graph graphs/planner.py --router DIR   # DIR: a trained graph-planner
"""

from agentroute.routers.graph_planner.graph import build_planner_graph, graph

__all__ = ["build_planner_graph", "graph"]
