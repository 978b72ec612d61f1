"""A sync routed node that ends a paused task of an async saver does not block the nodes' shared loop.

An app on an event loop with an ``AsyncSqliteSaver`` (bound to that loop) runs a graph with
``invoke`` in a worker thread, and on the loop's own thread makes a sync agentroute call meanwhile
(:func:`~agentroute.graph_runtime.run_sync`, as a sync routed node or ``app.run`` does inside a
running loop). The worker's routed node, on agentroute's one background loop, ends the task the
thread left paused and reads the thread on the saver's loop: it waited for it *blocking* that
background loop, while the saver's loop waited for the background loop to finish the sync call —
both stopped for good, with no CPU. It now awaits the read.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, threading
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt
    from agentroute import Dispatcher, make_router, routed_node
    from agentroute.graph_runtime import run_sync
    from tests.helpers import replay_pool
    from tests.test_routed_node_live_runs_r247 import State

    entered = threading.Event()
    dispatcher = Dispatcher(replay_pool(), make_router("cheapest"))

    async def main(path):
        async with AsyncSqliteSaver.from_conn_string(path) as saver:
            builder = StateGraph(State)
            builder.add_node("pre", lambda s: entered.set() or {})
            builder.add_node("draft", routed_node(dispatcher, role="executor", prompt="d", output_key="draft"))
            builder.add_node("ask", lambda s: {"answer": interrupt("ok?")})
            builder.add_edge(START, "pre")
            builder.add_edge("pre", "draft")
            builder.add_edge("draft", "ask")
            builder.add_edge("ask", END)
            app = builder.compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "t"}}
            await app.ainvoke({"query": "x", "query_id": "q2"}, config)  # its task paused
            entered.clear()
            worker = asyncio.create_task(asyncio.to_thread(app.invoke, {"query": "y", "query_id": "q4"}, config))
            await asyncio.to_thread(entered.wait)
            run_sync(asyncio.sleep(0.5))  # a sync agentroute call on the loop's thread meanwhile
            print((await worker)["draft"])

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_sync_invoke_ending_an_async_savers_paused_task_does_not_deadlock(tmp_path):
    pytest.importorskip("langgraph.checkpoint.sqlite.aio", reason="pip install 'agentroute[checkpoint]'")
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path / "checkpoints.db")],
            cwd=root, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("deadlocked: the background loop waited for the saver's loop, blocked on it")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "small says 4"
