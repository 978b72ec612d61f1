"""A compiled agent graph is a LangGraph graph; routed nodes work in any LangGraph graph (issue 11).

Regression tests for the failures LangGraph users met first: async-only routed nodes, one ledger
per node instead of per task, ``asyncio.run`` inside a running loop, a sync stream that was not
incremental, ignored stream modes, no subgraph use, no ``get_state``/``batch``/``get_graph``.
"""

from __future__ import annotations

import asyncio
import operator
import threading
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from agentroute import AgentGraph, Budget, Dispatcher, make_router, routed_node
from agentroute.dispatch.run import LIVE
from agentroute.graph import AgentrouteState, CompiledAgentGraph, new_task
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool


def three_stage(name: str = "three") -> AgentGraph:
    g = AgentGraph(name)
    g.add_role("planner", prompt="plan").add_role("executor", prompt="do").add_role("summarizer", prompt="sum")
    return g.add_edge("planner", "executor").add_edge("executor", "summarizer")


@pytest.fixture
def memory(tmp_path):
    store = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    yield store
    store.close()


def recorded(memory, task_id):
    memory.flush()
    return memory.get_task(task_id)


class UserState(AgentrouteState):
    query: str
    query_id: str
    draft: str
    answer: str


def user_graph(dispatcher: Dispatcher, *, budget: Budget | None = None, parallel: bool = False):
    builder = StateGraph(UserState)
    builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="draft", output_key="draft", budget=budget))
    builder.add_node(
        "polish", routed_node(dispatcher, role="refiner", prompt="polish", input_key="query", output_key="answer", budget=budget)
    )
    builder.add_edge(START, "draft")
    builder.add_edge(START if parallel else "draft", "polish")
    return builder.compile()


# -- issue 11, failure 1: routed_node is async-only --------------------------------------------
def test_routed_node_runs_under_sync_invoke_and_stream():
    app = user_graph(Dispatcher(replay_pool(), make_router("cheapest")))
    out = app.invoke({"query": "question", "query_id": "q3"})
    assert out["draft"] == "small says 3" and out["answer"] == "small says 3"
    assert [next(iter(c)) for c in app.stream({"query": "question", "query_id": "q3"})] == ["draft", "polish"]


# -- issue 11, failure 2: two routed nodes, two ledgers --------------------------------------
@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_routed_nodes_of_one_invocation_share_one_task_and_ledger(memory, parallel, mode):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    app = user_graph(dispatcher, budget=Budget(calls=1), parallel=parallel)
    inp = {"query": "question", "query_id": "q2"}
    out = app.invoke(inp) if mode == "sync" else asyncio.run(app.ainvoke(inp))
    trajectory = recorded(memory, out["agentroute"]["task_id"])
    assert len(trajectory.steps) == 1  # one call under calls=1, not one per node
    assert out["agentroute"]["ledger"]["spent"][2] == 1

    app = user_graph(dispatcher, budget=Budget(calls=5), parallel=parallel)
    out = app.invoke(inp) if mode == "sync" else asyncio.run(app.ainvoke(inp))
    trajectory = recorded(memory, out["agentroute"]["task_id"])
    assert sorted(s.index for s in trajectory.steps) == [0, 1]  # unique step indices
    assert trajectory.task.cost_usd == pytest.approx(sum(s.cost_usd for s in trajectory.steps))
    assert trajectory.task.cost_usd == pytest.approx(0.002) and trajectory.task.status == "done"
    assert out["agentroute"]["ledger"]["spent"][0] == pytest.approx(0.002) and len(LIVE) < 100


class LegacyState(TypedDict, total=False):
    """A user's state as earlier releases asked for it: a plain TypedDict with the flat
    ``agentroute_task_id`` and ``agentroute_cost_usd`` keys, not :class:`AgentrouteState`."""

    query: str
    query_id: str
    draft: str
    answer: str
    agentroute_task_id: str
    agentroute_cost_usd: float


async def test_routed_step_inside_a_users_own_langgraph_graph():
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"))
    builder = StateGraph(LegacyState)
    builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="draft", output_key="draft", budget=Budget(usd=0.005)))
    builder.add_node("polish", lambda s: {"answer": s["draft"].upper()})
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "polish")
    out = await builder.compile().ainvoke({"query": "question", "query_id": "q3"})
    assert out["answer"] == "SMALL SAYS 3" and out["agentroute_cost_usd"] == pytest.approx(0.001)


def test_routed_nodes_in_a_legacy_state_share_the_task_by_its_id():
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"))
    builder = StateGraph(LegacyState)
    builder.add_node("a", routed_node(dispatcher, role="executor", prompt="a", output_key="draft", budget=Budget(calls=1)))
    builder.add_node("b", routed_node(dispatcher, role="refiner", prompt="b", budget=Budget(calls=1)))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    out = builder.compile().invoke({"query": "x", "query_id": "q1"})
    assert out["agentroute_cost_usd"] == pytest.approx(0.001)  # the second node found no budget left


# -- issue 11, failure 4: notebooks, streaming, stream modes, subgraphs, LangGraph API ---------
async def test_run_and_invoke_work_inside_a_running_event_loop():
    """What a notebook cell does: synchronous calls while an event loop runs in this thread."""
    asyncio.get_running_loop()
    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"))
    assert app.run("x", query_id="q2").answer == "small says 2"
    assert app.invoke({"query": "x", "query_id": "q2"})["status"] == "done"
    assert [next(iter(c)) for c in app.stream({"query": "x", "query_id": "q4"})] == ["planner", "executor", "summarizer"]
    assert app.batch([{"query": "x", "query_id": "q1"}, {"query": "x", "query_id": "q3"}])[1]["answer"] == "small says 3"
    user = user_graph(Dispatcher(replay_pool(), make_router("cheapest")))
    assert user.invoke({"query": "q", "query_id": "q5"})["answer"] == "small says 5"
    assert (await app.ainvoke({"query": "x", "query_id": "q2"}))["answer"] == "small says 2"


def test_sync_stream_is_incremental():
    seen = threading.Event()

    def wait_for_consumer(state, ctx):  # runs only after the consumer got the planner's chunk
        assert seen.wait(timeout=5), "the planner's update was not streamed before the next node ran"
        return {}

    g = AgentGraph("inc").add_role("planner", prompt="p").add_node("wait", wait_for_consumer).add_role("executor", prompt="e")
    app = g.add_edge("planner", "wait").add_edge("wait", "executor").compile(pool=replay_pool(), router=make_router("cheapest"))
    names = []
    for chunk in app.stream({"query": "x", "query_id": "q1"}):
        names.append(next(iter(chunk)))
        seen.set()
    assert names == ["planner", "wait", "executor"]


async def test_async_stream_is_incremental():
    seen = asyncio.Event()

    async def wait_for_consumer(state, ctx):
        await asyncio.wait_for(seen.wait(), 5)
        return {}

    g = AgentGraph("inc").add_role("planner", prompt="p").add_node("wait", wait_for_consumer).add_role("executor", prompt="e")
    app = g.add_edge("planner", "wait").add_edge("wait", "executor").compile(pool=replay_pool(), router=make_router("cheapest"))
    names = []
    async for chunk in app.astream({"query": "x", "query_id": "q1"}):
        names.append(next(iter(chunk)))
        seen.set()
    assert names == ["planner", "wait", "executor"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_modes_messages_custom_values_debug(mode):
    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"))
    inp = {"query": "x", "query_id": "q2"}
    modes = ["messages", "custom", "values", "updates", "debug"]
    if mode == "sync":
        chunks = list(app.stream(inp, stream_mode=modes))
    else:
        async def collect():
            return [c async for c in app.astream(inp, stream_mode=modes)]

        chunks = asyncio.run(collect())
    by_mode: dict[str, list[Any]] = {}
    for kind, payload in chunks:
        by_mode.setdefault(kind, []).append(payload)
    messages = by_mode["messages"]
    assert [m.content for m, _ in messages] == ["small says 2"] * 3
    assert [meta["langgraph_node"] for _, meta in messages] == ["planner", "executor", "summarizer"]
    assert messages[0][0].response_metadata["model_name"] == "small"
    custom = [c["agentroute"] for c in by_mode["custom"]]
    assert [(c["index"], c["stage"], c["model"]) for c in custom] == [(0, "planner", "small"), (1, "executor", "small"), (2, "summarizer", "small")]
    assert by_mode["values"][-1]["status"] == "done"
    assert [next(iter(u)) for u in by_mode["updates"]] == ["planner", "executor", "summarizer"]
    assert any(d["type"] == "task_result" for d in by_mode["debug"])


def test_routed_node_messages_in_a_user_graph():
    app = user_graph(Dispatcher(replay_pool(), make_router("cheapest")))
    messages = list(app.stream({"query": "q", "query_id": "q4"}, stream_mode="messages"))
    assert [(m.content, meta["langgraph_node"]) for m, meta in messages] == [("small says 4", "draft"), ("small says 4", "polish")]


def test_compiled_agent_graph_is_a_langgraph_graph(memory):
    from langgraph.pregel import Pregel

    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
    assert isinstance(app, Pregel) and isinstance(app, CompiledAgentGraph) and app.graph is app
    assert {"planner", "executor", "summarizer"} <= set(app.get_graph().nodes)
    configured = app.with_config(tags=["mine"])
    assert isinstance(configured, CompiledAgentGraph) and configured.dispatcher is app.dispatcher
    outs = app.batch([{"query": "x", "query_id": f"q{i}"} for i in range(4)])
    assert [o["answer"] for o in outs] == [f"small says {i}" for i in range(4)]
    outs = asyncio.run(app.abatch([{"query": "x", "query_id": f"q{i}"} for i in range(4)]))
    assert [recorded(memory, o["task_id"]).task.status for o in outs] == ["done"] * 4
    assert configured.invoke({"query": "x", "query_id": "q1"})["answer"] == "small says 1"


def test_state_api_is_delegated_to_langgraph():
    from langgraph.checkpoint.memory import InMemorySaver

    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t1"}}
    out = app.invoke({"query": "x", "query_id": "q2"}, cfg)
    snapshot = app.get_state(cfg)
    assert snapshot.values["answer"] == "small says 2" and snapshot.next == ()
    assert snapshot.values["agentroute"]["task_id"] == out["task_id"]
    assert asyncio.run(app.aget_state(cfg)).values["status"] == "done"
    assert len(list(app.get_state_history(cfg))) >= 4
    app.update_state(cfg, {"answer": "edited"})
    assert app.get_state(cfg).values["answer"] == "edited"


class ParentState(TypedDict, total=False):
    query: str
    query_id: str
    answer: str
    status: str
    task_id: str
    log: Annotated[list[str], lambda a, b: (a or []) + (b or [])]


@pytest.mark.parametrize("checkpointed", [False, True])
def test_compiled_agent_graph_as_a_subgraph_finishes_its_task(memory, checkpointed):
    from langgraph.checkpoint.memory import InMemorySaver

    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
    parent = StateGraph(ParentState)
    parent.add_node("qa", app)  # the compiled agent graph itself, as a subgraph
    parent.add_node("after", lambda s: {"log": [f"{s['status']}:{s['answer']}"]})
    parent.add_edge(START, "qa")
    parent.add_edge("qa", "after")
    parent.add_edge("after", END)
    compiled = parent.compile(checkpointer=InMemorySaver() if checkpointed else None)
    cfg = {"configurable": {"thread_id": "p1"}} if checkpointed else None
    out = compiled.invoke({"query": "x", "query_id": "q4"}, cfg)
    assert out["log"] == ["done:small says 4"]
    trajectory = recorded(memory, out["task_id"])
    assert trajectory.task.status == "done" and len(trajectory.steps) == 3
    chunks = list(compiled.stream({"query": "y", "query_id": "q5"}, cfg, subgraphs=True))
    assert any(ns and ns[0].startswith("qa") for ns, _ in chunks)  # the subgraph's own updates



def test_a_subgraph_whose_task_stops_early_records_it_and_the_parent_goes_on(memory):
    """The chain leaves at the stop (Command to its END), finished by the node it stopped in."""
    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=1))
    parent = StateGraph(ParentState)
    parent.add_node("qa", app)
    parent.add_node("after", lambda s: {"log": [f"{s['status']}:{s['answer']}"]})
    parent.add_edge(START, "qa")
    parent.add_edge("qa", "after")
    out = parent.compile().invoke({"query": "x", "query_id": "q4"})
    assert out["log"] == ["budget_exhausted:small says 4"]
    trajectory = recorded(memory, out["task_id"])
    assert trajectory.task.status == "budget_exhausted" and [s.stage for s in trajectory.steps] == ["planner"]

def test_compiled_agent_graph_called_from_a_parent_node(memory):
    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)

    def ask(state: ParentState) -> ParentState:
        out = app.invoke({"query": state["query"], "query_id": "q2"})
        return {"answer": out["answer"], "task_id": out["task_id"]}

    parent = StateGraph(ParentState)
    parent.add_node("ask", ask)
    parent.add_edge(START, "ask")
    out = parent.compile().invoke({"query": "x"})
    assert out["answer"] == "small says 2" and recorded(memory, out["task_id"]).task.status == "done"


def test_subgraph_joins_the_task_of_a_user_graph(memory):
    """routed_node + an AgentGraph subgraph in one user graph: one task, one ledger, unique indices."""
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    sub = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)

    class State(AgentrouteState):
        query: str
        query_id: str
        draft: str
        answer: str
        status: str

    builder = StateGraph(State)
    draft = routed_node(dispatcher, role="planner", prompt="draft", output_key="draft", budget=Budget(calls=3))
    builder.add_node("draft", draft)  # its stage is the subgraph's first: the stage machine lets it continue
    builder.add_node("qa", sub)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "qa")
    out = builder.compile().invoke({"query": "x", "query_id": "q1"})
    trajectory = recorded(memory, out["agentroute"]["task_id"])
    assert [s.index for s in trajectory.steps] == [0, 1, 2]  # draft, planner, executor: calls=3 holds
    assert out["status"] == "budget_exhausted"
    assert trajectory.task.cost_usd == pytest.approx(sum(s.cost_usd for s in trajectory.steps))


@pytest.mark.parametrize("path", ["invoke", "stream", "arun"])
def test_an_invocation_that_raises_finishes_its_task_failed_without_a_checkpointer(memory, path):
    def boom(state, ctx):
        raise RuntimeError("boom")

    g = AgentGraph("boom").add_role("planner", prompt="p").add_node("boom", boom).add_edge("planner", "boom")
    app = g.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory)
    with pytest.raises(RuntimeError, match="boom"):
        if path == "invoke":
            app.invoke({"query": "x", "query_id": "q1", "task_id": "t-boom"})
        elif path == "stream":
            list(app.stream({"query": "x", "query_id": "q1", "task_id": "t-boom"}))
        else:
            asyncio.run(app.arun("x", query_id="q1", task_id="t-boom"))
    trajectory = recorded(memory, "t-boom")
    assert trajectory.task.status == "failed" and len(trajectory.steps) == 1
    assert trajectory.task.cost_usd == pytest.approx(trajectory.steps[0].cost_usd) and LIVE.get("t-boom") is None


def test_routed_nodes_under_batch_abatch_and_astream(memory):
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    app = user_graph(dispatcher, budget=Budget(calls=2), parallel=True)
    inputs = [{"query": "x", "query_id": f"q{i}"} for i in range(4)]
    outs = app.batch(inputs) + asyncio.run(app.abatch(inputs))
    task_ids = [o["agentroute"]["task_id"] for o in outs]
    assert len(set(task_ids)) == 8  # one task per invocation
    assert all(sorted(s.index for s in recorded(memory, t).steps) == [0, 1] for t in task_ids)

    async def collect():
        return [c async for c in app.astream(inputs[0], stream_mode="updates")]

    assert sorted(next(iter(c)) for c in asyncio.run(collect())) == ["draft", "polish"]


class FanState(AgentrouteState):
    query: str
    query_id: str
    a: str
    b: str
    c: str


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
def test_routed_nodes_in_parallel_share_one_task_and_report_its_whole_cost(memory, path):
    """Three routed nodes after START run in one superstep: one task, one ledger, and the state's
    ``agentroute_task_id`` / ``agentroute_cost_usd`` (declared by AgentrouteState) take all three
    writes — plain keys raised InvalidUpdateError. A new input on the thread is a new task whose
    cost starts again from zero."""
    from langgraph.checkpoint.memory import InMemorySaver

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(FanState)
    for name in ("a", "b", "c"):
        builder.add_node(name, routed_node(dispatcher, role="executor", prompt=name, output_key=name))
        builder.add_edge(START, name)
    app = builder.compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": f"fan-{path}"}}
    first = {"query": "question 1", "query_id": "q1"}
    second = {"query": "question 2", "query_id": "q2", "agentroute": new_task(budget={"calls": 1})}
    costs = []
    for inp, steps in ((first, 3), (second, 1)):
        out = app.invoke(inp, cfg) if path == "invoke" else asyncio.run(app.ainvoke(inp, cfg))
        trajectory = recorded(memory, out["agentroute_task_id"])
        assert sorted(s.index for s in trajectory.steps) == list(range(steps))
        assert out["agentroute_cost_usd"] == pytest.approx(sum(s.cost_usd for s in trajectory.steps))
        costs.append(out["agentroute_cost_usd"])
    assert costs[1] == pytest.approx(costs[0] / 3)  # the new task's own cost, not the first one's carried over


# -- LangGraph's own patterns in a user's graph: MessagesState, Send map-reduce ------------------
def test_a_chat_graph_on_messages_state_routes_each_turn_as_a_task_of_its_own(memory):
    """``AgentrouteState`` combines with LangGraph's ``MessagesState`` (a TypedDict of another
    metaclass raised TypeError), the step reads the last message's text — not the list's repr — and
    the answer is appended as an ``AIMessage`` (a plain string became a *human* message)."""
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import MessagesState

    class Chat(MessagesState, AgentrouteState):
        query_id: str

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(Chat)
    builder.add_node("chat", routed_node(dispatcher, role="assistant", prompt="Be brief.", input_key="messages", output_key="messages"))
    builder.add_edge(START, "chat")
    app = builder.compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "chat"}}
    first = app.invoke({"messages": [("user", "hi there")], "query_id": "q2"}, cfg)
    turn = [{"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "again?"}]}]
    second = app.invoke({"messages": turn, "query_id": "q3"}, cfg)
    assert [type(m) for m in second["messages"]] == [HumanMessage, AIMessage, HumanMessage, AIMessage]
    assert [m.content for m in second["messages"][1::2]] == ["small says 2", "small says 3"]
    assert second["messages"][-1].name == "assistant"
    assert first["agentroute_task_id"] != second["agentroute_task_id"]  # a new turn is a new task
    inputs = [recorded(memory, out["agentroute_task_id"]).steps[0].input for out in (first, second)]
    assert inputs == ["hi there", "and again?"]
    streamed = [m for m, _ in app.stream({"messages": [("user", "hi")], "query_id": "q4"}, {"configurable": {"thread_id": "s"}}, stream_mode="messages")]
    assert [m.content for m in streamed] == ["small says 4"]  # once: the state's message has the streamed one's id


class Jokes(AgentrouteState):
    topic: str
    query_id: str
    subjects: list[str]
    jokes: Annotated[list[str], operator.add]
    best: str


def jokes_graph(dispatcher: Dispatcher, budget: Budget, *, routed_planner: bool):
    """LangGraph's map-reduce: a planner, one ``Send`` per subject to a routed worker whose answers
    a list reducer collects, then a routed reducer."""
    from langgraph.types import Send

    def plain_planner(state: Jokes) -> dict[str, Any]:
        return {"subjects": ["cats", "dogs", "birds"]}

    planner = routed_node(
        dispatcher, role="planner", prompt="List subjects.", input_key="topic",
        output=lambda text: {"subjects": ["cats", "dogs", "birds"]}, budget=budget,
    ) if routed_planner else plain_planner
    builder = StateGraph(Jokes)
    builder.add_node("plan", planner)
    builder.add_node("joke", routed_node(
        dispatcher, role="joker", prompt="One joke.", input=lambda s: f"a joke about {s['subject']}",
        output=lambda text: {"jokes": [text]}, budget=budget,
    ))
    builder.add_node("best", routed_node(
        dispatcher, role="judge", prompt="Pick the best.", input=lambda s: "\n".join(s["jokes"]), output_key="best", budget=budget,
    ))
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", lambda s: [Send("joke", {"subject": x, "query_id": s["query_id"]}) for x in s["subjects"]], ["joke"])
    builder.add_edge("joke", "best")
    return builder.compile()


@pytest.mark.parametrize("routed_planner", [False, True], ids=["plain-planner", "routed-planner"])
@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
def test_send_branches_share_the_invocations_task_and_its_budget(memory, routed_planner, path):
    """``Send`` branches get only their payload, not the task channel: each opened a task of its own
    with a budget of its own (3 workers under ``calls=3`` after a routed planner made 4 calls; a
    worker's text into a list reducer raised TypeError). Now every branch joins the invocation's
    task, the budget holds across them, and a refused branch adds nothing to the list."""
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    app = jokes_graph(dispatcher, Budget(calls=3), routed_planner=routed_planner)
    inp = {"topic": "animals", "query_id": "q4"}
    out = app.invoke(inp) if path == "invoke" else asyncio.run(app.ainvoke(inp))
    trajectory = recorded(memory, out["agentroute_task_id"])
    assert len(trajectory.steps) == 3  # the budget's three calls, in one task
    workers = [s for s in trajectory.steps if s.stage == "joker"]
    assert len(out["jokes"]) == len(workers) == (2 if routed_planner else 3)
    assert out["jokes"] == ["small says 4"] * len(workers)
    assert {s.input for s in workers} <= {f"a joke about {x}" for x in ("cats", "dogs", "birds")}
    assert len({s.input for s in workers}) == len(workers)
    assert out["agentroute_cost_usd"] == pytest.approx(0.003)
    memory.flush()
    assert memory.stats()["tasks_total"] == 1 and memory.stats()["steps"] == 3

    roomy = jokes_graph(dispatcher, Budget(calls=10), routed_planner=routed_planner).invoke(inp)
    steps = recorded(memory, roomy["agentroute_task_id"]).steps
    assert [s.stage for s in sorted(steps, key=lambda s: s.index)][-1] == "judge"
    assert len(steps) == 3 + routed_planner + 1 and len(roomy["jokes"]) == 3 and roomy["best"] == "small says 4"


def test_a_routed_node_whose_input_key_is_missing_names_it():
    builder = StateGraph(UserState)
    builder.add_node("a", routed_node(Dispatcher(replay_pool(), make_router("cheapest")), role="executor", prompt="a", input_key="question"))
    builder.add_edge(START, "a")
    from agentroute.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no 'question'.*input_key= or input="):
        builder.compile().invoke({"query": "x", "query_id": "q1"})


def test_routed_steps_are_chat_model_runs_for_astream_events_and_callback_handlers():
    """``astream_events`` (what LangChain UIs consume), tracers and a caller's own callback handler
    saw no model run for routed steps: only the ``messages`` stream mode was reported to."""
    from langchain_core.callbacks import BaseCallbackHandler

    app = three_stage().compile(pool=replay_pool(), router=make_router("cheapest"))

    async def events() -> list[dict[str, Any]]:
        return [e async for e in app.astream_events({"query": "x", "query_id": "q2"}, version="v2")]

    ends = [e for e in asyncio.run(events()) if e["event"] == "on_chat_model_end"]
    assert [e["metadata"]["langgraph_node"] for e in ends] == ["planner", "executor", "summarizer"]
    assert [e["data"]["output"].content for e in ends] == ["small says 2"] * 3
    assert {e["name"] for e in ends} == {"small"} and ends[0]["metadata"]["ls_model_name"] == "small"

    class Seen(BaseCallbackHandler):
        def __init__(self) -> None:
            self.ended: list[str] = []
            self.failed: list[str] = []

        def on_llm_end(self, response, **kwargs: Any) -> None:
            self.ended.append(response.generations[0][0].message.content)

        def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            self.failed.append(str(error))

    seen = Seen()
    assert app.invoke({"query": "x", "query_id": "q4"}, {"callbacks": [seen]})["answer"] == "small says 4"
    assert seen.ended == ["small says 4"] * 3 and seen.failed == []
    unknown = Seen()
    assert app.invoke({"query": "x", "query_id": "no-such-query"}, {"callbacks": [unknown]})["status"] == "failed"
    assert unknown.ended == [] and len(unknown.failed) == 1 and "no-such-query" in unknown.failed[0]
