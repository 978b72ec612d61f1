"""A task of your own ``StateGraph`` is learned once, whole, when it really ends.

Each routed node keeps the task's record up to date (status, answer, cost), but the router hears
``observe(last_step, task)`` — "the task ended" — once per task, with every step of it seen by the ant
colony's deposit: when the root invocation ends, not after each node, not at an ``interrupt()`` nor
at an exception a checkpointed thread resumes from. Was: after every routed node, so a planner →
solver task was learned as two one-step tasks.
"""

from __future__ import annotations

import asyncio
import operator
import threading
from typing import Annotated, Any

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, Send, interrupt

from agentroute import AgentGraph, Dispatcher, routed_node
from agentroute.graph import AgentrouteState
from agentroute.memory import SQLMemory
from agentroute.outcomes import OutcomeTable
from agentroute.routers.ant_colony import AntColonyRouter
from agentroute.routers.baselines import CheapestRouter
from tests.helpers import replay_pool


class State(AgentrouteState):
    query: str
    query_id: str
    plan: str
    answer: str


class Recording(CheapestRouter):
    """The cheapest router, keeping what ``observe`` receives: ``(task id, step index, ended)``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, bool]] = []
        self._lock = threading.Lock()

    def observe(self, step, task=None):
        with self._lock:
            self.seen.append((step.task_id, step.index, task is not None))

    def ended(self) -> dict[str, list[int]]:
        """Each ended task → the indices of the steps it was ended with (one when ended once)."""
        out: dict[str, list[int]] = {}
        for task_id, index, end in self.seen:
            if end:
                out.setdefault(task_id, []).append(index)
        return out


@pytest.fixture
def memory(tmp_path):
    store = SQLMemory(f"sqlite:///{tmp_path}/memory.db")
    yield store
    store.close()


@pytest.fixture
def colony():
    """An ant colony over the replay pool's two models; its judge keeps each learned task's steps."""
    table = OutcomeTable(
        query_ids=["q0", "q1"], queries=["q0", "q1"], models=["small", "large"],
        scores=np.array([[1.0, 1.0], [0.0, 1.0]]), costs=np.array([[0.001, 0.01], [0.001, 0.01]]),
    )  # fmt: skip
    learned: list[tuple[str, list[int]]] = []

    def judge(trajectory):
        learned.append((trajectory.task.id, [s.index for s in trajectory.steps]))
        return True

    router = AntColonyRouter(intent="none", judge=judge).fit(table)
    learned.clear()  # the warm start's own paths
    router.learned = learned  # type: ignore[attr-defined]
    yield router
    router.close()


def chain(dispatcher: Dispatcher, **compile_kwargs):
    """planner → solver, both routed."""
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(dispatcher, role="planner", prompt="Plan.", output_key="plan"))
    builder.add_node("solver", routed_node(dispatcher, role="executor", prompt="Solve.", input_key="plan"))
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "solver")
    return builder.compile(**compile_kwargs)


def chain_with(dispatcher: Dispatcher, name: str, node: Any, *, last: bool = False) -> StateGraph:
    """planner → ``name`` → solver (``last``: planner → solver → ``name``), the two routed; uncompiled."""
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(dispatcher, role="planner", prompt="Plan.", output_key="plan"))
    builder.add_node(name, node)
    builder.add_node("solver", routed_node(dispatcher, role="executor", prompt="Solve.", input_key="plan"))
    order = ["planner", "solver", name] if last else ["planner", name, "solver"]
    for a, b in zip([START, *order], order, strict=False):
        builder.add_edge(a, b)
    return builder


def inputs(n: int) -> list[dict[str, str]]:
    return [{"query": f"question {i}", "query_id": f"q{i}"} for i in range(n)]


def whole_tasks(colony: AntColonyRouter, n: int, steps: int = 2) -> None:
    """The colony learned ``n`` tasks, each once, each with all its ``steps``."""
    assert colony.flush(10)
    learned = colony.learned  # type: ignore[attr-defined]
    assert [len(s) for _, s in learned] == [steps] * n, learned
    assert len({t for t, _ in learned}) == n
    assert colony.stats()["observed"] == n


def ended_once(router: Recording, n: int, last: int = 1) -> None:
    assert router.ended() == {t: [last] for t in router.ended()} and len(router.ended()) == n, router.seen


# -- each user path: the task ends once, whole ------------------------------------------------------
def test_sync_invoke_learns_each_task_once_with_both_steps(memory, colony):
    app = chain(Dispatcher(replay_pool(), colony, memory=memory))
    for state in inputs(3):
        assert app.invoke(state)["answer"]
    whole_tasks(colony, 3)  # was: 6 one-step tasks
    memory.flush()
    assert {t.task.status for t in memory.trajectories(graph="langgraph", status=None)} == {"done"}


def test_ainvoke_and_astream_end_each_task_once(memory):
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router, memory=memory))

    async def main():
        for state in inputs(2):
            await app.ainvoke(state)
        async for _ in app.astream({"query": "question 2", "query_id": "q2"}, stream_mode="updates"):
            pass

    asyncio.run(main())
    ended_once(router, 3)  # was: each task ended twice, at step 0 and at step 1


def test_sync_stream_and_invoke_in_a_running_loop_end_each_task_once(memory):
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router, memory=memory))
    for _ in app.stream({"query": "question 0", "query_id": "q0"}, stream_mode=["updates", "custom"]):
        pass

    async def notebook_cell():  # sync invoke while a loop runs in this thread (Jupyter)
        return app.invoke({"query": "question 1", "query_id": "q1"})

    assert asyncio.run(notebook_cell())["answer"]
    ended_once(router, 2)


def test_batch_and_abatch_end_each_task_once(memory):
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router, memory=memory))
    assert all(out["answer"] for out in app.batch(inputs(3)))
    asyncio.run(app.abatch(inputs(2)))
    ended_once(router, 5)


def test_interrupt_before_the_solver_is_no_end(memory):
    router = Recording()
    app = chain(Dispatcher(replay_pool(), router, memory=memory), checkpointer=InMemorySaver(),
                interrupt_before=["solver"])  # fmt: skip
    cfg = {"configurable": {"thread_id": "before"}}
    app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
    assert router.ended() == {}  # was: ended after the planner
    assert app.invoke(None, cfg)["answer"]
    ended_once(router, 1)


def test_agentgraph_arun_on_the_same_chain_is_the_reference(memory):
    router = Recording()
    graph = AgentGraph("qa").add_role("planner", prompt="Plan.").add_role("executor", prompt="Solve.")
    app = graph.add_edge("planner", "executor").compile(pool=replay_pool(), router=router, memory=memory)

    async def main():
        for i in range(2):
            await app.arun(f"question {i}", query_id=f"q{i}")

    asyncio.run(main())
    ended_once(router, 2)


def test_an_interrupt_pauses_and_the_resume_ends_the_task_once(memory, colony):
    dispatcher = Dispatcher(replay_pool(), colony, memory=memory)

    def review(state):
        return {"plan": interrupt({"plan": state["plan"]})}

    app = chain_with(dispatcher, "review", review).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "hitl"}}
    assert "__interrupt__" in app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
    assert colony.flush(10) and colony.stats()["observed"] == 0  # paused: not an end
    assert app.invoke(Command(resume="the edited plan"), cfg)["answer"]
    whole_tasks(colony, 1)


def crashing_once(dispatcher: Dispatcher) -> Any:
    """planner → flaky → solver on an in-memory checkpointer, ``flaky`` raising the first time only."""
    crashes = {"left": 1}

    def flaky(state):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("the worker crashed")
        return {}

    return chain_with(dispatcher, "flaky", flaky).compile(checkpointer=InMemorySaver())


def test_a_crash_then_resume_ends_the_task_once(memory, colony):
    dispatcher = Dispatcher(replay_pool(), colony, memory=memory)
    app, cfg = crashing_once(dispatcher), {"configurable": {"thread_id": "crash"}}
    with pytest.raises(RuntimeError, match="crashed"):
        app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
    assert colony.flush(10) and colony.stats()["observed"] == 0  # resumable: not an end
    assert app.invoke(None, cfg)["answer"]
    whole_tasks(colony, 1)


class Fan(AgentrouteState):
    query: str
    query_id: str
    subjects: list[str]
    answers: Annotated[list[str], operator.add]


def test_parallel_send_branches_are_one_task_ended_once(memory, colony):
    dispatcher = Dispatcher(replay_pool(), colony, memory=memory)
    builder = StateGraph(Fan)
    builder.add_node("plan", lambda state: {"subjects": ["a", "b", "c"]})
    builder.add_node("work", routed_node(dispatcher, role="executor", prompt="Do.", input=lambda s: s["subject"],
                                         output=lambda text: {"answers": [text]}))  # fmt: skip
    builder.add_edge(START, "plan")
    fan = lambda s: [Send("work", {"subject": x, "query_id": s["query_id"]}) for x in s["subjects"]]  # noqa: E731
    builder.add_conditional_edges("plan", fan, ["work"])
    app = builder.compile()
    for state in inputs(2):
        assert len(app.invoke(state)["answers"]) == 3
    whole_tasks(colony, 2, steps=3)  # was: 6 one-step tasks


def test_a_subgraph_s_routed_node_belongs_to_the_parent_s_task(memory, colony):
    """The subgraph ends before the parent's solver runs: the task ends with the root invocation."""
    dispatcher = Dispatcher(replay_pool(), colony, memory=memory)
    inner = StateGraph(State)
    inner.add_node("planner", routed_node(dispatcher, role="planner", prompt="Plan.", output_key="plan"))
    inner.add_edge(START, "planner")
    outer = StateGraph(State)
    outer.add_node("inner", inner.compile())
    outer.add_node("solver", routed_node(dispatcher, role="executor", prompt="Solve.", input_key="plan"))
    outer.add_edge(START, "inner")
    outer.add_edge("inner", "solver")
    app = outer.compile(checkpointer=InMemorySaver())
    for i, state in enumerate(inputs(2)):
        assert app.invoke(state, {"configurable": {"thread_id": f"sub{i}"}})["answer"]
    whole_tasks(colony, 2)


def test_without_a_checkpointer_an_exception_ends_the_task_and_its_record_stands(memory, colony):
    dispatcher = Dispatcher(replay_pool(), colony, memory=memory)

    def boom(state):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        chain_with(dispatcher, "boom", boom, last=True).compile().invoke({"query": "question 0", "query_id": "q0"})
    whole_tasks(colony, 1)  # nothing can resume it: it ended
    memory.flush()
    (task,) = memory.trajectories(graph="langgraph", status=None)
    assert (task.task.status, len(task.steps)) == ("done", 2) and task.task.cost_usd > 0


def test_a_resume_through_plain_nodes_only_ends_the_task_at_the_thread_s_next_input(memory, colony):
    """No routed node runs in the resumed invocation: the task ends when the next input starts another."""
    dispatcher = Dispatcher(replay_pool(), colony, memory=memory)

    def review(state):
        return {"answer": interrupt({"answer": state["answer"]})}

    app = chain_with(dispatcher, "review", review, last=True).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "late"}}
    assert "__interrupt__" in app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
    assert app.invoke(Command(resume="approved"), cfg)["answer"] == "approved"
    assert colony.flush(10) and colony.stats()["observed"] == 0
    assert "__interrupt__" in app.invoke({"query": "question 1", "query_id": "q1"}, cfg)  # a new task
    whole_tasks(colony, 1)


@pytest.mark.postgres
def test_a_claimed_invocation_that_raises_records_failed_and_the_resume_ends_the_task_once(checkpoint_db):
    """Several workers (PostgreSQL memory and checkpoints, ``claiming``): the error is recorded, not an end."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from agentroute.graph import claiming
    from tests.fixtures_postgres import saver_url

    router, crashes = Recording(), {"left": 1}

    def flaky(state):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("a tool failed")
        return {}

    with SQLMemory(checkpoint_db) as memory, PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as saver:
        saver.setup()
        dispatcher = Dispatcher(replay_pool(), router, memory=memory)
        app, cfg = claiming(chain_with(dispatcher, "flaky", flaky).compile(checkpointer=saver), memory), {"configurable": {"thread_id": "claimed"}}
        with pytest.raises(RuntimeError, match="a tool failed"):
            app.invoke({"query": "question 0", "query_id": "q0"}, cfg)
        task_id = app.get_state(cfg).values["agentroute_task_id"]
        memory.flush()
        assert memory.get_task(task_id).task.status == "failed"
        assert router.ended() == {}  # was: ended at step 0 (after the planner, and again as failed)
        assert app.invoke(None, cfg)["answer"]
        memory.flush()
        assert memory.get_task(task_id).task.status == "done"
        assert router.ended() == {task_id: [1]}
