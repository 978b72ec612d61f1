"""A paused task whose resume ran plain nodes only to pause again, then abandoned, is ``interrupted``.

Your ``StateGraph``: a routed planner, then two human reviews (or two static breakpoints). The first
review pauses; the human answers it; the plain nodes run on to the second pause; the thread's next
input then abandons the task. Was: recorded ``done`` — a step of the graph followed the first pause,
as if it had finished — although the graph stood paused, so ``trajectories()`` (default: done) fed
the half task to training as a whole one. The line must end where the graph finished.
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt

from agentroute import Dispatcher, routed_node
from tests import test_routed_node_new_input_a231 as a231
from tests.helpers import replay_pool
from tests.test_routed_node_evicted_a221 import question
from tests.test_routed_node_new_input_a231 import CFG, ended_by_new_input
from tests.test_routed_node_task_end import Recording, State

memory, saver, own_paused_tasks = a231.memory, a231.saver, a231.own_paused_tasks  # the fixtures


def review(state):
    return {"plan": interrupt({"plan": state["plan"]})}


def sign_off(state):
    return {"answer": interrupt({"answer": state["plan"]})}


def reviewed_twice(memory, checkpointer, *, breakpoints: bool = False):
    """planner (routed) → review → sign_off: two ``interrupt()`` s, or (``breakpoints``) two plain
    nodes behind ``interrupt_before``."""
    router = Recording()
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(Dispatcher(replay_pool(), router, memory=memory), role="planner",
                                            prompt="Plan.", output_key="plan"))  # fmt: skip
    if breakpoints:
        builder.add_node("review", lambda state: {"plan": state["plan"] + " (reviewed)"})
        builder.add_node("sign_off", lambda state: {"answer": state["plan"]})
    else:
        builder.add_node("review", review)
        builder.add_node("sign_off", sign_off)
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "review")
    builder.add_edge("review", "sign_off")
    stops = ["review", "sign_off"] if breakpoints else None
    return router, builder.compile(checkpointer=checkpointer, interrupt_before=stops)


@pytest.mark.parametrize("breakpoints", [False, True], ids=["interrupt", "interrupt_before"])
def test_new_input_after_a_resume_that_paused_again_records_the_task_interrupted(memory, saver, breakpoints):
    router, app = reviewed_twice(memory, saver, breakpoints=breakpoints)
    app.invoke(question(0), CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    app.invoke(None if breakpoints else Command(resume="approved"), CFG)  # the first review passes
    assert app.get_state(CFG).next == ("sign_off",)  # paused again: the graph never finished
    app.invoke(question(1), CFG)
    ended_by_new_input(memory, router, old, app.get_state(CFG).values["agentroute_task_id"], "interrupted", last=0)
    assert memory.trajectories(graph="langgraph", status=["done"]) == []  # was: the half task


def test_ainvoke_new_input_after_a_resume_that_paused_again_records_the_task_interrupted(tmp_path, memory):
    async def main() -> tuple[Recording, str, str]:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            router, app = reviewed_twice(memory, saver)
            await app.ainvoke(question(0), CFG)
            old = (await app.aget_state(CFG)).values["agentroute_task_id"]
            await app.ainvoke(Command(resume="approved"), CFG)
            assert (await app.aget_state(CFG)).next == ("sign_off",)
            await app.ainvoke(question(1), CFG)
            return router, old, (await app.aget_state(CFG)).values["agentroute_task_id"]

    router, old, new = asyncio.run(main())
    ended_by_new_input(memory, router, old, new, "interrupted", last=0)  # was: done


def test_new_input_after_a_resume_through_both_reviews_records_the_task_done(memory, saver):
    """Both reviews answered, the graph at its end: the new input ends a finished task."""
    router, app = reviewed_twice(memory, saver)
    app.invoke(question(0), CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    app.invoke(Command(resume="approved"), CFG)
    assert app.invoke(Command(resume="signed"), CFG)["answer"] == "signed"
    app.invoke(question(1), CFG)
    ended_by_new_input(memory, router, old, app.get_state(CFG).values["agentroute_task_id"], "done", last=0)


def test_a_finished_task_evicted_after_a_new_input_that_ran_no_routed_node_and_paused_stays_done(
    monkeypatch, memory, saver
):
    """The task's resume reached the graph's end; the thread's next input skipped the routed node and
    paused at the review: the task, evicted later, finished before that input (``done``)."""
    from langgraph.graph import END

    monkeypatch.setattr(a231.runtime, "_PAUSED_LIMIT", 1)
    router = Recording()
    builder = StateGraph(State)
    builder.add_node("planner", routed_node(Dispatcher(replay_pool(), router, memory=memory), role="planner",
                                            prompt="Plan.", output_key="plan"))  # fmt: skip
    builder.add_node("review", review)
    builder.add_conditional_edges(START, lambda state: "review" if state["query"] == "chat" else "planner")
    builder.add_edge("planner", "review")
    builder.add_edge("review", END)
    app = builder.compile(checkpointer=saver)
    app.invoke(question(0), CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    app.invoke(Command(resume="approved"), CFG)  # plain nodes to the graph's end
    assert "__interrupt__" in app.invoke({"query": "chat", "plan": "?"}, CFG)  # no routed node ran
    assert router.ended() == {}
    other = {"configurable": {"thread_id": "t-other"}}
    app.invoke(question(1), other)  # a second paused task: the first is evicted
    memory.flush()
    assert router.ended() == {old: [0]}
    assert memory.get_task(old).task.status == "done"
