"""The MiniWoB++ web agent, loadable by path (``graphs/web_agent.py:graph``).

The definition ships inside the package (``agentroute.web``) so that ``pip install`` users get it
too; this file is the by-path entry point. ``graph()`` returns the compiled LangGraph loop
(observe → act → …) of a default :class:`~agentroute.web.WebAgent` (cascade router, DOM skill +
SmolLM2); ``WebAgent(...).run_episode(task, seed)`` plays an episode.

    import asyncio
    from graphs.web_agent import WebAgent
    agent = WebAgent(router="cascade")
    print(asyncio.run(agent.run_episode("click-button", seed=0)))
    agent.close()
"""

from agentroute.web.agent import WebAgent, build_web_graph, web_pool


def graph() -> object:
    """The compiled episode graph of a default :class:`WebAgent`."""
    return WebAgent().graph


__all__ = ["WebAgent", "build_web_graph", "graph", "web_pool"]
