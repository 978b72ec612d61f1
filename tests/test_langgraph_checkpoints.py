"""Checkpoints resume the same task, with its ledger, on every real LangGraph saver (issue 11).

After a node raises mid-graph, ``invoke(None, config)`` / ``ainvoke(None, config)`` continues from
the checkpoint in the right stage, with the ledger as it was, the same task id and a memory row that
is never reset — in the same process (the live run) and in a "new process" (the live run dropped
and the graph compiled again, so the task is rebuilt from the checkpoint and the memory).
``interrupt()`` pauses and resumes within the same budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt

from agentroute import AgentGraph, Budget, Dispatcher, make_router, routed_node
from agentroute.dispatch.run import LIVE
from agentroute.graph import AgentrouteState
from agentroute.memory import SQLMemory
from tests.fixtures_postgres import saver_url, sync_saver
from tests.helpers import replay_pool

SYNC_SAVERS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ASYNC_SAVERS = ["memory", "aiosqlite", pytest.param("apostgres", marks=pytest.mark.postgres)]


def _pg(request) -> str:
    return saver_url(request.getfixturevalue("postgres_url"))


@contextlib.asynccontextmanager
async def async_saver(kind: str, tmp_path, request) -> AsyncIterator[Any]:
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    elif kind == "aiosqlite":
        pytest.importorskip("aiosqlite", reason="pip install 'agentroute[checkpoint]'")
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            yield saver
    else:
        pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(_pg(request)) as saver:
            await saver.setup()
            yield saver


@pytest.fixture
def memory(tmp_path):
    store = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    yield store
    store.close()


def recorded(memory, task_id):
    memory.flush()
    return memory.get_task(task_id)


def crashing_graph(crashes: dict[str, int]) -> AgentGraph:
    """planner → flaky → executor → summarizer; ``flaky`` raises ``crashes["left"]`` times."""

    def flaky(state, ctx):
        if crashes["left"] > 0:
            crashes["left"] -= 1
            raise RuntimeError("the worker crashed")
        return {}

    g = AgentGraph("crashy").add_role("planner", prompt="plan").add_node("flaky", flaky)
    g.add_role("executor", prompt="do").add_role("summarizer", prompt="sum")
    return g.add_edge("planner", "flaky").add_edge("flaky", "executor").add_edge("executor", "summarizer")


def compile_app(graph: AgentGraph, memory, saver, budget: Budget):
    return graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=budget, checkpointer=saver)


def check_resumed(memory, task_id: str, out: dict[str, Any], created_at) -> None:
    """calls=2: planner and executor ran, the summarizer found no budget — never 3 paid calls."""
    assert out["task_id"] == task_id and out["agentroute"]["task_id"] == task_id
    trajectory = recorded(memory, task_id)
    assert [(s.index, s.stage) for s in trajectory.steps] == [(0, "planner"), (1, "executor")]
    assert trajectory.task.status == "budget_exhausted" and out["status"] == "budget_exhausted"
    assert trajectory.task.created_at == created_at  # the row was never started again
    assert trajectory.task.cost_usd == pytest.approx(sum(s.cost_usd for s in trajectory.steps))
    assert not [e for e in memory.audit_events(task_id) if e.kind == "stage_blocked"]
    assert out["agentroute"]["ledger"]["spent"][2] == 2


@pytest.mark.parametrize("new_process", [False, True], ids=["same-process", "new-process"])
@pytest.mark.parametrize("kind", SYNC_SAVERS)
def test_sync_resume_after_a_node_raised_continues_the_same_task(kind, new_process, memory, tmp_path, request):
    crashes = {"left": 1}
    with sync_saver(kind, tmp_path, request) as saver:
        app = compile_app(crashing_graph(crashes), memory, saver, Budget(calls=2))
        cfg = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex}"}}
        with pytest.raises(RuntimeError, match="crashed"):
            app.invoke({"query": "x", "query_id": "q2"}, cfg)
        snapshot = app.get_state(cfg)
        assert snapshot.next == ("flaky",)
        task_id = snapshot.values["agentroute"]["task_id"]
        before = recorded(memory, task_id)
        assert before.task.status == "running" and len(before.steps) == 1
        if new_process:
            LIVE.drop(task_id)
            app = compile_app(crashing_graph(crashes), memory, saver, Budget(calls=2))
        out = app.invoke(None, cfg)
        check_resumed(memory, task_id, out, before.task.created_at)
        assert LIVE.get(task_id) is None


@pytest.mark.parametrize("new_process", [False, True], ids=["same-process", "new-process"])
@pytest.mark.parametrize("kind", ASYNC_SAVERS)
def test_async_resume_after_a_node_raised_continues_the_same_task(kind, new_process, memory, tmp_path, request):
    async def scenario() -> None:
        crashes = {"left": 1}
        async with async_saver(kind, tmp_path, request) as saver:
            app = compile_app(crashing_graph(crashes), memory, saver, Budget(calls=2))
            cfg = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex}"}}
            with pytest.raises(RuntimeError, match="crashed"):
                await app.ainvoke({"query": "x", "query_id": "q2"}, cfg)
            snapshot = await app.aget_state(cfg)
            task_id = snapshot.values["agentroute"]["task_id"]
            before = recorded(memory, task_id)
            if new_process:
                LIVE.drop(task_id)
                app = compile_app(crashing_graph(crashes), memory, saver, Budget(calls=2))
            out = await app.ainvoke(None, cfg)
            check_resumed(memory, task_id, out, before.task.created_at)

    asyncio.run(scenario())


def test_a_step_paid_after_the_last_checkpoint_is_charged_on_resume(memory, tmp_path, request):
    """A node paid for a step, then the process died before the checkpoint: spending stays continuous."""
    crashes = {"left": 1}

    async def sneaky(state, ctx):  # a plain node that makes a routed call itself, then crashes
        await ctx.dispatcher.step(ctx.run, role="planner", stage="planner", prompt="again", input="x")
        if crashes["left"] > 0:
            crashes["left"] -= 1
            raise RuntimeError("the worker crashed")
        return {}

    def graph() -> AgentGraph:
        g = AgentGraph("sneaky").add_role("planner", prompt="plan").add_node("sneaky", sneaky)
        return g.add_role("executor", prompt="do").add_edge("planner", "sneaky").add_edge("sneaky", "executor")

    with sync_saver("sqlite", tmp_path, request) as saver:
        cfg = {"configurable": {"thread_id": "sneaky"}}
        app = compile_app(graph(), memory, saver, Budget(calls=3))
        with pytest.raises(RuntimeError):
            app.invoke({"query": "x", "query_id": "q1"}, cfg)
        task_id = app.get_state(cfg).values["agentroute"]["task_id"]
        LIVE.drop(task_id)
        out = compile_app(graph(), memory, saver, Budget(calls=3)).invoke(None, cfg)
    trajectory = recorded(memory, task_id)
    assert [s.index for s in trajectory.steps] == [0, 1, 2]  # planner, sneaky, sneaky again; no 4th call
    assert out["status"] == "budget_exhausted" and out["agentroute"]["ledger"]["spent"][2] == 3


@pytest.mark.parametrize("mode", ["sync", "async", "new-process"])
def test_interrupt_pauses_and_resumes_within_the_same_budget(mode, memory):
    from langgraph.checkpoint.memory import InMemorySaver

    def approve(state, ctx):
        answer = interrupt({"plan": state["answer"]})
        return {"context": {"approved": answer}}

    def graph() -> AgentGraph:
        g = AgentGraph("hitl").add_role("planner", prompt="plan").add_node("approve", approve)
        g.add_role("executor", prompt="do").add_role("summarizer", prompt="sum")
        return g.add_edge("planner", "approve").add_edge("approve", "executor").add_edge("executor", "summarizer")

    saver = InMemorySaver()
    app = compile_app(graph(), memory, saver, Budget(calls=2))
    cfg = {"configurable": {"thread_id": f"h-{mode}"}}
    inp = {"query": "x", "query_id": "q2"}
    paused = asyncio.run(app.ainvoke(inp, cfg)) if mode == "async" else app.invoke(inp, cfg)
    assert paused["__interrupt__"][0].value == {"plan": "small says 2"}
    task_id = paused["task_id"]
    before = recorded(memory, task_id)
    assert before.task.status == "running" and len(before.steps) == 1
    if mode == "new-process":
        LIVE.drop(task_id)
        app = compile_app(graph(), memory, saver, Budget(calls=2))
    resume = Command(resume="yes")
    out = asyncio.run(app.ainvoke(resume, cfg)) if mode == "async" else app.invoke(resume, cfg)
    assert out["context"]["approved"] == "yes"
    check_resumed(memory, task_id, out, before.task.created_at)



@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_arun_returns_the_interrupt_and_aresume_continues_the_task(kind, memory, tmp_path, request):
    """``arun`` reads LangGraph's final values (``version="v2"`` where it exists): the interrupt still
    comes back under ``__interrupt__``, on an async saver and on a sync-only one (LangGraph's sync path)."""

    def approve(state, ctx):
        return {"context": {"approved": interrupt({"plan": state["answer"]})}}

    g = AgentGraph("hitl-arun").add_role("planner", prompt="plan").add_node("approve", approve)
    g.add_role("executor", prompt="do").add_edge("planner", "approve").add_edge("approve", "executor")
    with sync_saver(kind, tmp_path, request) as saver:
        app = compile_app(g, memory, saver, Budget(calls=2))
        paused = app.run("x", query_id="q2", task_id=f"hitl-arun-{kind}")
        assert paused.status == "running" and len(paused.steps) == 1
        assert paused.state["__interrupt__"][0].value == {"plan": "small says 2"}
        cfg = {"configurable": {"thread_id": f"hitl-arun-{kind}"}}
        done = asyncio.run(app.aresume(cfg, command=Command(resume="yes")))
    assert done.task.id == paused.task.id and done.status == "done"
    assert done.state["context"]["approved"] == "yes" and "__interrupt__" not in done.state
    assert len(done.steps) == 2

class UserState(AgentrouteState):
    query: str
    query_id: str
    draft: str
    answer: str


@pytest.mark.parametrize("new_process", [False, True], ids=["same-process", "new-process"])
def test_routed_nodes_in_a_user_graph_resume_the_same_task(new_process, memory, tmp_path, request):
    crashes = {"left": 1}

    def flaky(state):
        if crashes["left"] > 0:
            crashes["left"] -= 1
            raise RuntimeError("the worker crashed")
        return {}

    def app_for(saver):
        dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
        builder = StateGraph(UserState)
        builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="d", output_key="draft", budget=Budget(calls=1)))
        builder.add_node("flaky", flaky)
        builder.add_node("polish", routed_node(dispatcher, role="refiner", prompt="p", budget=Budget(calls=1)))
        builder.add_edge(START, "draft")
        builder.add_edge("draft", "flaky")
        builder.add_edge("flaky", "polish")
        return builder.compile(checkpointer=saver)

    with sync_saver("sqlite", tmp_path, request) as saver:
        app, cfg = app_for(saver), {"configurable": {"thread_id": "user-thread"}}
        with pytest.raises(RuntimeError):
            app.invoke({"query": "first question", "query_id": "q2"}, cfg)
        task_id = app.get_state(cfg).values["agentroute"]["task_id"]
        if new_process:
            LIVE.drop(task_id)
            app = app_for(saver)
        out = app.invoke(None, cfg)  # the plain node runs first after the resume: still the same task
        assert out["agentroute"]["task_id"] == task_id
        assert len(recorded(memory, task_id).steps) == 1  # calls=1 held across the crash
        assert out["agentroute"]["ledger"]["spent"][2] == 1
        again = app.invoke({"query": "second question", "query_id": "q4"}, cfg)  # a new input: a new task
        assert again["agentroute"]["task_id"] != task_id and again["answer"] == "small says 4"
        assert len(recorded(memory, again["agentroute"]["task_id"]).steps) == 1


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_run_and_arun_with_a_sync_only_saver(kind, memory, tmp_path, request):
    """SqliteSaver / PostgresSaver have no async methods: run/arun still work (issue 11: NotImplementedError)."""
    with sync_saver(kind, tmp_path, request) as saver:
        app = compile_app(crashing_graph({"left": 0}), memory, saver, Budget(calls=5))
        assert app.run("x", query_id="q1").status == "done"
        result = asyncio.run(app.arun("x", query_id="q3", config={"configurable": {"thread_id": f"s-{uuid.uuid4().hex}"}}))
        assert result.status == "done" and len(result.steps) == 3
        results = asyncio.run(app.arun_many([{"query": "x", "query_id": f"q{i}"} for i in range(4)], concurrency=2))
        assert [r.answer for r in results] == [f"small says {i}" for i in range(4)]
        assert app.get_state({"configurable": {"thread_id": results[0].task.id}}).values["status"] == "done"


def test_a_thread_of_a_user_graph_starts_a_new_task_when_asked(memory):
    from langgraph.checkpoint.memory import InMemorySaver

    from agentroute.graph import new_task

    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"), memory=memory)
    builder = StateGraph(UserState)
    builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="d", budget=Budget(calls=1)))
    builder.add_edge(START, "draft")
    app, cfg = builder.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "chat"}}
    first = app.invoke({"query": "same", "query_id": "q1"}, cfg)["agentroute"]
    again = app.invoke({"query": "same", "query_id": "q1"}, cfg)["agentroute"]  # same input: same task, no budget left
    assert again["task_id"] == first["task_id"] and again["ledger"]["spent"][2] == 1
    forced = app.invoke({"query": "same", "query_id": "q1", "agentroute": new_task(budget={"calls": 2})}, cfg)["agentroute"]
    assert forced["task_id"] != first["task_id"] and forced["budget"] == {"calls": 2} and forced["ledger"]["spent"][2] == 1
    cleared = app.invoke({"query": "same", "query_id": "q1", "agentroute": None}, cfg)["agentroute"]
    assert cleared["task_id"] not in (first["task_id"], forced["task_id"])
    assert len(recorded(memory, first["task_id"]).steps) == 1


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_resume_and_aresume_return_the_continued_task(kind, memory, tmp_path, request):
    crashes = {"left": 1}
    with sync_saver(kind, tmp_path, request) as saver:
        app = compile_app(crashing_graph(crashes), memory, saver, Budget(calls=5))
        cfg = {"configurable": {"thread_id": f"r-{uuid.uuid4().hex}"}}
        with pytest.raises(RuntimeError):
            app.run("x", query_id="q2", config=cfg)
        task_id = app.get_state(cfg).values["agentroute"]["task_id"]
        LIVE.drop(task_id)
        result = app.resume(cfg)
        assert result.task.id == task_id and result.status == "done" and [s.index for s in result.steps] == [0, 1, 2]
        assert result.cost_usd == pytest.approx(sum(s.cost_usd for s in result.steps)) and result.answer == "small says 2"
        again = asyncio.run(app.aresume(cfg))  # already finished: nothing runs, same record
        assert again.task.id == task_id and again.status == "done" and len(again.steps) == 3
        assert len(recorded(memory, task_id).steps) == 3
        with pytest.raises(Exception, match="no started agentroute task"):
            app.resume({"configurable": {"thread_id": "never-used"}})
