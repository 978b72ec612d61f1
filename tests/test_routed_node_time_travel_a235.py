"""A paused task abandoned by a new input sent from a checkpoint before its pause (LangGraph time
travel: ``invoke(new_input, config_naming_an_earlier_checkpoint_id)``) is recorded ``interrupted``.

Was: ``done``, because the checkpoint the input started from was another one than the pause's and
written by a step, as if the graph had gone on past the pause; ``trajectories()`` (default: done)
then fed the half task to training as a whole one. Now the task is judged on the lines of
checkpoints that continue from its pause, which a line forked from before it is not.
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.types import Command

from agentroute.memory import SQLMemory
from tests import test_routed_node_new_input_a231 as a231
from tests.test_routed_node_evicted_a221 import question
from tests.test_routed_node_new_input_a231 import CFG, async_saver, ended_by_new_input, paused_app
from tests.test_routed_node_task_end import Recording

memory, saver, own_paused_tasks = a231.memory, a231.saver, a231.own_paused_tasks  # the fixtures


def _before_the_pause(history: list) -> dict:
    """The checkpoint after the planner, before the solver and the review's pause (newest first)."""
    return next(state for state in history if state.next == ("solver",)).config


def travel_sync(memory: SQLMemory, saver, *, resume: bool = False) -> tuple[Recording, str, str]:
    """planner → solver → review pauses; (``resume``: approved, the graph ends;) then question 1 is
    sent from the checkpoint before the solver: ``(router, first task, second task)``."""
    router, app = paused_app(memory, last=True, checkpointer=saver)
    assert "__interrupt__" in app.invoke(question(0), CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    if resume:
        assert app.invoke(Command(resume="approved"), CFG)["plan"] == "approved"  # plain nodes only
    fork = _before_the_pause(list(app.get_state_history(CFG)))
    assert router.ended() == {}
    assert "__interrupt__" in app.invoke(question(1), fork)
    return router, old, app.get_state(CFG).values["agentroute_task_id"]


async def travel_async(memory: SQLMemory, saver) -> tuple[Recording, str, str]:
    """:func:`travel_sync` through ``ainvoke``."""
    router, app = paused_app(memory, last=True, checkpointer=saver)
    assert "__interrupt__" in await app.ainvoke(question(0), CFG)
    old = (await app.aget_state(CFG)).values["agentroute_task_id"]
    fork = _before_the_pause([state async for state in app.aget_state_history(CFG)])
    assert "__interrupt__" in await app.ainvoke(question(1), fork)
    return router, old, (await app.aget_state(CFG)).values["agentroute_task_id"]


def test_new_input_from_a_checkpoint_before_the_pause_records_the_paused_task_interrupted(memory, saver):
    router, old, new = travel_sync(memory, saver)
    ended_by_new_input(memory, router, old, new, "interrupted", last=1)  # was: done
    assert memory.trajectories(graph="langgraph", status=["done"]) == []


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ainvoke_new_input_from_a_checkpoint_before_the_pause_records_the_paused_task_interrupted(
    tmp_path, memory, kind
):
    async def main() -> tuple[Recording, str, str]:
        async with async_saver(tmp_path, kind) as opened:
            return await travel_async(memory, opened)

    router, old, new = asyncio.run(main())
    ended_by_new_input(memory, router, old, new, "interrupted", last=1)  # was: done


def test_new_input_from_before_a_pause_the_graph_went_on_past_records_the_line_it_left(memory, saver):
    """Resumed through plain nodes to its end, then a new input sent from before the pause: the task
    finished on its own line, which the fork leaves as it was (tests/test_routed_node_finished_line_a243.py)."""
    router, old, new = travel_sync(memory, saver, resume=True)
    ended_by_new_input(memory, router, old, new, "done", last=1)


def test_a_paused_task_evicted_after_a_new_input_from_before_its_input_is_recorded_interrupted(
    monkeypatch, memory, saver
):
    """The new input is sent from the checkpoint before the first task's own input: that line holds
    no task; the new input ends the first one all the same (an input drops what its thread had
    paused, tests/test_routed_node_subgraph_pause_a243.py), before any eviction (past
    ``_PAUSED_LIMIT``, here 1) when the second pauses. Was: ``done`` (the thread's latest checkpoint,
    the second task's pause, was a step's)."""
    monkeypatch.setattr(a231.runtime, "_PAUSED_LIMIT", 1)
    router, app = paused_app(memory, last=True, checkpointer=saver)
    assert "__interrupt__" in app.invoke(question(0), CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    start = next(state for state in app.get_state_history(CFG) if state.next == ("__start__",)).config
    assert "__interrupt__" in app.invoke(question(1), start)
    ended_by_new_input(memory, router, old, app.get_state(CFG).values["agentroute_task_id"], "interrupted", last=1)
