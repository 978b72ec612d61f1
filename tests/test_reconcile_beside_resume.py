"""``agentroute memory reconcile`` while ``app.resume`` continues a killed process's task leaves it alone.

A first process runs a checkpointed graph (SqliteSaver) and is killed (``SIGKILL``) with its call
in flight; this process resumes the thread (``app.resume``) and, while the resumed run's own call
is in flight, ``agentroute memory reconcile`` runs. Before, the task's row still named the killed
process, so the reconcile took the live task for gone: it closed it ``interrupted`` and stored the
resumed run's call in flight as a failed step at its worst case, and the resume then stored that
call's real step too — two steps at one index, the task's steps summing to $0.00028 for a $0.000155
task. Now the resume stores the task as its own first: the reconcile finds it alive and closes nothing.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentroute.cli.app import app
from agentroute.graph import AgentGraph
from agentroute.memory import SQLMemory, open_memory
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from tests.test_batch_server import CALL_USD, StubOpenAIServer, pool_yaml

pytest.importorskip("langgraph.checkpoint.sqlite", reason="pip install 'agentroute[checkpoint]'")

FIRST = """
import sqlite3, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from agentroute.graph import AgentGraph
from agentroute.memory import open_memory
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
d = sys.argv[1]
saver = SqliteSaver(sqlite3.connect(d + "/ck.db", check_same_thread=False))
memory = open_memory("sqlite:///" + d + "/m.db")
graph = AgentGraph("two").add_role("planner", prompt="Plan.").add_role("executor", prompt="Answer.").add_edge("planner", "executor")
graph.compile(pool=ModelPool.load(d + "/pool.yaml"), router=CheapestRouter(), memory=memory, checkpointer=saver).run("q?")
"""


def _wait(what: Any, first: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30  # a bound for a loaded machine, not a wait
    while not what() and time.monotonic() < deadline and (first is None or first.poll() is None):
        time.sleep(0.02)
    assert what(), "not reached"


def test_memory_reconcile_leaves_a_resumed_task_to_the_run_that_continues_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    with StubOpenAIServer(hold_after=1) as provider:  # the planner is answered; the executor calls hang
        (tmp_path / "pool.yaml").write_text(pool_yaml(provider.url))
        first = subprocess.Popen([sys.executable, "-c", FIRST, str(tmp_path)])
        try:
            _wait(lambda: provider.held == 1, first)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        memory = open_memory(url)
        saver = sqlite3.connect(tmp_path / "ck.db", check_same_thread=False)
        try:
            from langgraph.checkpoint.sqlite import SqliteSaver

            from agentroute.graph import run_sync

            graph = AgentGraph("two").add_role("planner", prompt="Plan.").add_role("executor", prompt="Answer.")
            compiled = graph.add_edge("planner", "executor").compile(
                pool=ModelPool.load(str(tmp_path / "pool.yaml")), router=CheapestRouter(), memory=memory,
                checkpointer=SqliteSaver(saver),
            )  # fmt: skip
            (task_id,) = memory.running_tasks().gone  # the killed process's
            done: dict[str, Any] = {}
            resume = threading.Thread(target=lambda: done.update(run=compiled.resume({"configurable": {"thread_id": task_id}})))
            resume.start()
            _wait(lambda: provider.held == 2)  # the resumed run's executor call is in flight
            reconciled = CliRunner().invoke(app, ["memory", "reconcile", "--memory", url, "--json"])
            provider.release.set()
            resume.join(30)
            run_sync(compiled.dispatcher.pool.aclose())  # its clients live on the loop the sync calls ran on
        finally:
            memory.close()
            saver.close()
    assert reconciled.exit_code == 0, reconciled.output
    assert '"closed": []' in reconciled.output, reconciled.output  # was: the live task, closed
    assert done["run"].status == "done"
    with SQLMemory(url) as after:
        trajectory = after.get_task(task_id)
        assert trajectory is not None and trajectory.task.status == "done"
        # planner, the killed run's executor call (its worst case, settled by the resume), the resumed one
        assert [(s.index, s.status) for s in trajectory.steps] == [(0, "ok"), (1, "failed"), (2, "ok")], trajectory.steps
        assert trajectory.steps[2].cost_usd == pytest.approx(CALL_USD)
        assert sum(s.cost_usd for s in trajectory.steps) == pytest.approx(trajectory.task.cost_usd)
        assert [e.kind for e in after.audit_events(task_id)] == ["unsettled_attempt"]
