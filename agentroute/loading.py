"""Resolve what users name on the command line or in recipes: graphs, routers, budgets."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentroute.budget import make_budget as make_budget  # its home; importable from here as before
from agentroute.errors import ConfigurationError, StateFileError, UnknownNameError
from agentroute.graph import AgentGraph
from agentroute.routers.base import MANIFEST, Router, check_pool, make_router
from agentroute.types import Agent

BUILTIN_GRAPHS = {
    "qa": "agentroute.graphs.qa:graph",
    "planner": "agentroute.routers.graph_planner.graph:graph",  # GraphPlanner's dynamic workflow
    "router_r1": "agentroute.routers.router_r1.graph:graph",  # Router-R1's think/route loop
}


def load_graph(spec: str = "qa") -> AgentGraph:
    """An :class:`AgentGraph` from ``"qa"``, ``"module:attr"`` or ``"path/file.py[:attr]"``.

    The attribute (default ``graph``) may be an AgentGraph or a function returning one. A graph
    file is Python that the user wrote and names on purpose (LangGraph's ``graphs/qa.py:graph``
    convention), so it is imported and runs; it is the only user file that does. A file that is
    not Python text, fails to import or holds no graph is a :class:`ConfigurationError` naming it.
    """
    target = BUILTIN_GRAPHS.get(spec, spec)
    source, _, attr = target.partition(":") if not Path(target).exists() else (target, "", "")
    attr = attr or "graph"
    if source.endswith(".py") or Path(source).exists():
        module = _import_graph_file(Path(source))
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as exc:
            raise ConfigurationError(
                f"unknown graph {spec!r}: not a built-in ({', '.join(BUILTIN_GRAPHS)}), a module or a .py file"
            ) from exc
    obj: Any = getattr(module, attr, None)
    if obj is None:
        raise ConfigurationError(f"graph {spec!r}: no attribute {attr!r}")
    if callable(obj) and not isinstance(obj, AgentGraph):
        obj = obj()
    if not isinstance(obj, AgentGraph):
        raise ConfigurationError(f"graph {spec!r}: {attr!r} is a {type(obj).__name__}, not an AgentGraph")
    return obj


def _import_graph_file(path: Path) -> Any:
    if not path.exists():
        raise ConfigurationError(f"graph file {path} does not exist")
    if not path.is_file():
        raise ConfigurationError(f"graph file {path} is not a file; expected a .py file")
    head = path.read_bytes()[:65536]
    if b"\0" in head:
        raise ConfigurationError(f"graph file {path} is binary; expected Python source")
    name = f"_agentroute_graph_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigurationError(f"cannot import graph file {path}: expected a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: name the file and what went wrong, keep the chain
        sys.modules.pop(name, None)
        where = f" line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ConfigurationError(
            f"graph file {path}{where} failed to import: {type(exc).__name__}: {message[:300]}"
        ) from exc
    return module


def check_not_other_file(path: Path) -> None:
    """A :class:`StateFileError` when ``path``, given as a router, is a file other than a saved
    router's ``router.json`` (the ``logs.csv`` it was trained on): one line saying what is expected."""
    if path.is_file() and path.suffix.lower() != ".json":
        raise StateFileError(
            path, f"not a saved router (expected {MANIFEST} written by `agentroute train`, or its folder)"
        )


def load_router(
    spec: str,
    *,
    pool: Any = None,
    graph: AgentGraph | None = None,
    allow_new_agents: bool = False,
    warn: Callable[[str], None] | None = None,
    **params: Any,
) -> Router:
    """A router by registered name, or loaded from a directory written by ``Router.save``;
    ``params`` go to the router's constructor, or to a loaded router's ``set_params``.

    With ``pool`` (a :class:`~agentroute.pool.ModelPool`), a trained router is checked against
    the agents it will route over — every role of ``graph`` (default: one ``executor`` role) played
    by each pool model in each of its strategies — by :func:`~agentroute.routers.base.check_pool`:
    pool agents the router never saw are a :class:`ConfigurationError` naming them, unless the
    router is inductive or ``allow_new_agents``; ``warn`` gets the warnings (default: stderr).
    """
    path = Path(spec)
    check_not_other_file(path)
    if path.exists():
        router = Router.load(path).set_params(**params)  # e.g. the knob it serves at
    else:
        try:
            router = make_router(spec, **params)
        except UnknownNameError:
            if "/" not in spec and "\\" not in spec:
                raise
            raise ConfigurationError(
                f"{spec}: no such directory (a router saved by `agentroute train NAME --out DIR`), "
                "and not a registered router name (`agentroute routers list`)"
            ) from None
        if not router.is_fitted:
            raise ConfigurationError(
                f"router {spec!r} learns from data: train it first with "
                f"`agentroute train {spec} --dataset SPEC --out DIR` (or --from MEMORY_URL) and pass --router DIR"
            )
    if pool is not None:
        for note in check_graph_pool(
            router, pool, graph, allow_new_agents=allow_new_agents, source=str(spec)
        ):
            (warn or _stderr)(note)
    return router


def check_graph_pool(
    router: Router,
    pool: Any,
    graph: AgentGraph | None = None,
    *,
    allow_new_agents: bool = False,
    source: str = "",
) -> list[str]:
    """:func:`~agentroute.routers.base.check_pool` over :func:`graph_agents`; an error names them
    as the pool, or, where the roles' ``models=`` leave some pool models out, as those roles' models."""
    agents = graph_agents(pool, graph)
    among = "the pool"
    if graph is not None and {a.model for a in agents} != {a.model for a in pool.agents()}:
        among = f"the pool models the roles of graph {graph.name!r} may use"
    return check_pool(router, agents, allow_new_agents=allow_new_agents, source=source, among=among)


def graph_agents(pool: Any, graph: AgentGraph | None = None) -> list[Agent]:
    """The agents a compiled graph may route to: each routed role of ``graph`` (default: one
    ``executor`` role) played by each pool model it allows, in each of the model's strategies."""
    roles = [
        (name, getattr(node, "models", None))
        for name, node in (graph.nodes.items() if graph is not None else [])
        if hasattr(node, "prompt") and hasattr(node, "models")
    ] or [("executor", None)]
    agents: list[Agent] = []
    for role, models in roles:
        agents += [a for a in pool.agents(role) if models is None or a.model in models]
    return agents


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
