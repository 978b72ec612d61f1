"""The multi-hop QA graph, loadable by path (LangGraph convention ``graphs/qa.py:graph``).

The definition ships inside the package (``agentroute.graphs.qa``) so that ``pip install``
users get it too; this file is the by-path entry point.
"""

from agentroute.graphs.qa import build_qa_graph, graph

__all__ = ["build_qa_graph", "graph"]
