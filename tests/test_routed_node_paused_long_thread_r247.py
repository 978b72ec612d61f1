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
