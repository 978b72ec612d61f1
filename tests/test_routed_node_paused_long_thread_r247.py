"""A paused task ended by its thread's new input reads the checkpoints from the newest down to its
pause — not the thread's whole history.

A paused task is judged on the checkpoints that continue from its pause (routed_node, 3504563): one
saver ``list`` stopped at the pause. ``PostgresSaver.list`` fetches every row it matches before it
yields the first, so a chat thread's turn sent instead of a resume read all of the thread's
checkpoints with their blobs: 1,503 checkpoints, 663 ms for that turn (15 ms before 3504563). Read
in pages (``limit``, ``before``), it fetches those newer than the pause and a page's rest.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.test_routed_node_live_runs_r247 import app

pytestmark = pytest.mark.postgres


def test_a_new_input_after_a_pause_on_a_long_thread_reads_only_past_the_pause(checkpoint_db, tmp_path):
    psycopg = pytest.importorskip("psycopg")
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    from agentroute.memory import SQLMemory
    from tests.fixtures_postgres import saver_url

    class Counted(psycopg.Cursor):  # the rows PostgreSQL sends the saver
        rows = 0

        def fetchall(self):
            got = super().fetchall()
            Counted.rows += len(got)
            return got

        def fetchone(self):
            got = super().fetchone()
            Counted.rows += got is not None
            return got

    with (
        psycopg.Connection.connect(
            saver_url(checkpoint_db),
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
            cursor_factory=Counted,
        ) as conn,
        contextlib.closing(SQLMemory(f"sqlite:///{tmp_path}/memory.db")) as memory,
    ):
        saver = PostgresSaver(conn)
        saver.setup()
        plain, paused = app(saver=saver), app(saver=saver, pause=True, memory=memory)
        config = {"configurable": {"thread_id": "chat"}}
        for turn in range(60):  # a thread with a history: 300 checkpoints
            plain.invoke({"query": "earlier", "query_id": f"q{turn % 50}"}, config)
        paused.invoke({"query": "x", "query_id": "q2"}, config)
        task_id = paused.get_state(config).values["agentroute"]["task_id"]
        assert len(list(saver.list(config))) > 300

        Counted.rows = 0
        out = plain.invoke({"query": "a new turn, not a resume", "query_id": "q4"}, config)
        assert out["agentroute"]["task_id"] != task_id and out["answer"] == "small says 4"
        assert Counted.rows < 60, Counted.rows  # the new turn's own reads and a page past the pause
        memory.flush()
        assert memory.get_task(task_id).task.status == "interrupted"  # judged all the same


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_task_finished_many_checkpoints_before_the_new_task_is_judged_done(tmp_path, request, kind):
    """The line from the pause is read over several pages: a resume ran the graph to its end, then
    turns of a plain graph on the thread (no routed node: the task stays paused) pushed the pause
    40 checkpoints down; the routed graph's next input ends the task ``done``, not ``interrupted``."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    from agentroute import Dispatcher, make_router, routed_node
    from agentroute.memory import SQLMemory
    from tests.fixtures_postgres import sync_saver
    from tests.helpers import replay_pool
    from tests.test_routed_node_live_runs_r247 import State

    with (
        sync_saver(kind, tmp_path, request) as saver,
        contextlib.closing(SQLMemory(f"sqlite:///{tmp_path}/m.db")) as memory,
    ):
        routed = StateGraph(State)
        routed.add_node(
            "draft",
            routed_node(
                Dispatcher(replay_pool(), make_router("cheapest"), memory=memory),
                role="executor",
                prompt="d",
                output_key="draft",
            ),
        )
        routed.add_node("ask", lambda s: {"answer": interrupt("ok?")})
        routed.add_edge(START, "draft")
        routed.add_edge("draft", "ask")
        routed.add_edge("ask", END)
        app = routed.compile(checkpointer=saver)
        plain = StateGraph(State)
        plain.add_node("chat", lambda s: {"answer": s["query"]})
        plain.add_edge(START, "chat")
        plain.add_edge("chat", END)
        chat = plain.compile(checkpointer=saver)

        config = {"configurable": {"thread_id": "long"}}
        app.invoke({"query": "x", "query_id": "q2"}, config)
        task_id = app.get_state(config).values["agentroute"]["task_id"]
        assert app.invoke(Command(resume="yes"), config)["answer"] == "yes"  # plain nodes to the end
        for turn in range(13):
            chat.invoke({"query": f"turn {turn}"}, config)
        assert len(list(saver.list(config))) > 40
        app.invoke({"query": "y", "query_id": "q4"}, config)
        memory.flush()
        assert memory.get_task(task_id).task.status == "done"
