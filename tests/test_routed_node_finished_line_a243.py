"""A paused task that a resume ran to its graph's end stays ``done`` when the thread then forks.

planner → solver → review pauses; the human approves (a resume through plain nodes only: the graph
ends). Later a new input is sent from a checkpoint at or before the pause (LangGraph time travel).
The task finished on its own line: its record and what its router is told say ``done``. Was:
``interrupted``, because it was judged only on the line the new input started from, which never
went past the pause. A task whose own line never reached its end is still ``interrupted``.
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.types import Command

from tests import test_routed_node_new_input_a231 as a231
from tests.test_routed_node_evicted_a221 import paused_app, question
from tests.test_routed_node_new_input_a231 import CFG, ended_by_new_input
from tests.test_routed_node_task_end import Recording
from tests.test_routed_node_time_travel_a235 import _before_the_pause

memory, saver, own_paused_tasks = a231.memory, a231.saver, a231.own_paused_tasks  # the fixtures


def _the_pause(history: list) -> dict:
    """The review's pause, where the approval resumed (newest first)."""
    return next(state for state in history if state.next == ("review",)).config


@pytest.mark.parametrize("where", [_the_pause, _before_the_pause], ids=["at", "before"])
def test_a_task_finished_on_its_line_then_forked_from_its_pause_stays_done(memory, saver, where):
    router, app = paused_app(memory, last=True, checkpointer=saver)
    assert "__interrupt__" in app.invoke(question(0), CFG)
    old = app.get_state(CFG).values["agentroute_task_id"]
    assert app.invoke(Command(resume="approved"), CFG)["plan"] == "approved"  # plain nodes: the graph ended
    fork = where(list(app.get_state_history(CFG)))
    assert "__interrupt__" in app.invoke(question(1), fork)
    ended_by_new_input(memory, router, old, app.get_state(CFG).values["agentroute_task_id"], "done", last=1)
    assert [t.task.id for t in memory.trajectories(graph="langgraph")] == [old]  # was: none done


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ainvoke_a_task_finished_on_its_line_then_forked_from_before_its_pause_stays_done(tmp_path, memory, kind):
    async def main() -> tuple[Recording, str, str]:
        async with a231.async_saver(tmp_path, kind) as opened:
            router, app = paused_app(memory, last=True, checkpointer=opened)
            assert "__interrupt__" in await app.ainvoke(question(0), CFG)
            old = (await app.aget_state(CFG)).values["agentroute_task_id"]
            assert (await app.ainvoke(Command(resume="approved"), CFG))["plan"] == "approved"
            fork = _before_the_pause([state async for state in app.aget_state_history(CFG)])
            assert "__interrupt__" in await app.ainvoke(question(1), fork)
            return router, old, (await app.aget_state(CFG)).values["agentroute_task_id"]

    router, old, new = asyncio.run(main())
    ended_by_new_input(memory, router, old, new, "done", last=1)  # was: interrupted



@pytest.mark.postgres
def test_under_a_postgres_saver_a_task_finished_on_its_line_then_forked_stays_done(checkpoint_db, memory):
    from langgraph.checkpoint.postgres import PostgresSaver

    from tests.fixtures_postgres import saver_url

    with PostgresSaver.from_conn_string(saver_url(checkpoint_db)) as postgres:
        postgres.setup()
        router, app = paused_app(memory, last=True, checkpointer=postgres)
        assert "__interrupt__" in app.invoke(question(0), CFG)
        old = app.get_state(CFG).values["agentroute_task_id"]
        assert app.invoke(Command(resume="approved"), CFG)["plan"] == "approved"
        assert "__interrupt__" in app.invoke(question(1), _before_the_pause(list(app.get_state_history(CFG))))
        new = app.get_state(CFG).values["agentroute_task_id"]
    ended_by_new_input(memory, router, old, new, "done", last=1)
