"""The graphs the overhead benchmarks compare, in one place.

A 3-role chain (planner → executor → summarizer) on the replay backend, twice: bare LangGraph, whose
nodes call the backend directly, and a routed :class:`~agentroute.AgentGraph` (``cheapest`` router,
``Budget(usd=1.0)``). ``dispatch_overhead.py``, ``overhead_cpu.py``, ``overhead_instructions.py``,
``overhead_floor.py`` and ``checkpoint_overhead.py`` build theirs here, so that each measures the
same graphs.
"""

from __future__ import annotations

from typing import Any, TypedDict

from agentroute import AgentGraph, Budget, CompletionRequest, make_router
from agentroute.pool import LoggedOutcome, ModelCard, ModelPool, ReplayBackend

STAGES = ("planner", "executor", "summarizer")


class State(TypedDict, total=False):
    query: str
    query_id: str
    answer: str


def pool(n: int) -> ModelPool:
    """Three replay models (small, mid, large) answering queries ``q0`` … ``q{n-1}``."""
    cards = [
        ModelCard(id=m, backend="replay", input_price=p, output_price=p, tier=t)  # type: ignore[arg-type]
        for m, p, t in (("small", 0.1, "small"), ("mid", 1.0, "medium"), ("large", 10.0, "large"))
    ]
    outcomes = [LoggedOutcome(f"q{i}", c.id, 1.0, c.input_price * 1e-4, f"{c.id} {i}") for i in range(n) for c in cards]  # type: ignore[operator]
    return ModelPool(cards, {"replay": ReplayBackend(outcomes)})


def bare_graph(p: ModelPool, *, state: type = State, wide: bool = False, checkpointer: Any = None, sync: bool = False) -> Any:
    """Bare LangGraph: each node asks the replay backend's ``small`` model for the query.

    ``state``: the graph's state schema; ``wide``: the nodes write what a routed role node writes
    (``outputs`` and ``answer``, the query id fixed), else ``answer``; ``sync``: the nodes have a
    sync form too (for ``invoke`` on a sync saver; the replay backend answers without awaiting).
    """
    from langgraph._internal._runnable import RunnableCallable
    from langgraph.graph import END, START, StateGraph

    backend, card = p.backend("small"), p.card("small")

    def node(name: str) -> Any:
        async def acall(state: dict[str, Any]) -> dict[str, Any]:
            qid = "q0" if wide else state["query_id"]
            request = CompletionRequest(model=card.id, messages=[{"role": "user", "content": state["query"]}], query_id=qid)
            text = (await backend.complete(request, card)).text
            return {"outputs": {name: text}, "answer": text} if wide else {"answer": text}

        if not sync:
            return acall

        def call(state: dict[str, Any]) -> dict[str, Any]:
            coro = acall(state)
            try:
                coro.send(None)
            except StopIteration as done:
                return done.value
            raise RuntimeError("the backend awaited I/O")

        return RunnableCallable(call, acall, name=name, trace=False)

    builder = StateGraph(state)
    for name in STAGES:
        builder.add_node(name, node(name))
    builder.add_edge(START, STAGES[0])
    for a, b in zip(STAGES, STAGES[1:], strict=False):
        builder.add_edge(a, b)
    builder.add_edge(STAGES[-1], END)
    return builder.compile(checkpointer=checkpointer)


def routed_graph(p: ModelPool, memory: Any = None, *, checkpointer: Any = None, route_switch: bool = False) -> Any:
    """The routed chain. ``route_switch=False`` keeps the routing path fixed: a dispatcher moves its
    router to a worker thread after three ``route`` calls slower than ``Dispatcher.SLOW_ROUTE_S``,
    which a preempted call on a loaded machine can be."""
    g = AgentGraph("bench")
    for name in STAGES:
        g.add_role(name, prompt=name)
    for a, b in zip(STAGES, STAGES[1:], strict=False):
        g.add_edge(a, b)
    app = g.compile(pool=p, router=make_router("cheapest"), memory=memory, budget=Budget(usd=1.0), checkpointer=checkpointer)
    if not route_switch:
        app.dispatcher.SLOW_ROUTE_S = float("inf")  # the ordinary path, whatever the machine's load
    return app

