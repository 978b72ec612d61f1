"""A browser action on a hung page (a script that loops) runs in a worker thread: the event loop
stays free (other episodes, Ctrl-C), a ``seconds`` budget cuts the action at its deadline — the
episode ends ``budget_exhausted`` with its step and cost stored, its browser killed — and the next
episode of that slot gets a fresh browser. Before, the action blocked the loop up to the page-load
limit, past any deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentroute.budget import Budget
from agentroute.pool import ModelPool
from tests.fixtures_web import chromium, still_running, store  # noqa: F401 (fixtures)
from tests.test_web_user_paths import SCRIPTED, Scripted, _browsers_below

WebAgent = pytest.importorskip("agentroute.web").WebAgent

#: Keeps the renderer busy for 20 s, from 100 ms after it is set (the action's click lands in it).
HUNG = "setTimeout(() => { const t = Date.now(); while (Date.now() - t < 20000); }, 100);"


def _gone_within(seconds: float) -> list[int]:
    """The browser processes of this test still running after waiting up to ``seconds`` for them."""
    deadline = time.monotonic() + seconds
    while (left := _browsers_below(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


PROGRAM = """
import asyncio, sys, time
from agentroute.memory import open_memory
from tests.test_web_h61_user_paths import _scripted_agent

HUNG = {hung!r}
holder = {{}}

def hang_then_click(observation):
    holder["agent"].session("click-test").driver.execute_script(HUNG)
    time.sleep(0.3)
    print("hung", flush=True)
    return "click(4)"

holder["agent"] = _scripted_agent(open_memory(sys.argv[1]), [hang_then_click])
asyncio.run(holder["agent"].run_episode("click-test", 0))
"""


@pytest.mark.browser
def test_ctrl_c_during_a_hung_action_stops_the_program_at_once_with_no_browser_left(chromium, tmp_path):  # noqa: F811
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Chromium's socket path must fit
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM.format(hung=HUNG), f"sqlite:///{tmp_path / 'web.db'}"],
        env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "AGENTROUTE_WEB_PAGE_LOAD_S": "15"},
        cwd=Path(__file__).resolve().parents[1], start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "hung", proc.communicate(timeout=30)[0]
        time.sleep(0.5)  # the click is waiting on the hung page
        os.kill(proc.pid, signal.SIGINT)  # the program alone, as `kill -INT`
        sent = time.monotonic()
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - sent
        left = still_running(proc.pid, within_s=2)
        folders = sorted(p.name for p in tmp.iterdir())  # the browser's temporary folder was removed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    assert "KeyboardInterrupt" in out, out[-2000:]
    print(f"Ctrl-C took {took:.2f}s")
    assert took < 5, f"Ctrl-C took {took:.2f}s"  # 0.9–2.7 s on a 2-core box at load 9 (was the page-load limit: 15 s here)
    assert left == [] and folders == [], (left, folders)


@pytest.mark.browser
def test_a_browser_that_stops_answering_is_killed_past_the_page_load_limit(chromium, store, monkeypatch):  # noqa: F811
    """A chromedriver that answers nothing (stopped, here by SIGSTOP) held the click until Selenium's
    own HTTP timeout (120 s); now the episode fails past the page-load limit plus a grace (2 s; 0.5 s
    here), naming it, with its browser killed (the slot's next episode gets a fresh browser, as after
    a deadline: the test above)."""
    monkeypatch.setenv("AGENTROUTE_WEB_PAGE_LOAD_S", "1")
    monkeypatch.setattr("agentroute.web.env.COMMAND_GRACE_S", 0.5, raising=False)
    holder: dict[str, Any] = {}

    def stop_then_click(observation: str) -> str:
        os.kill(holder["agent"].session("click-test").driver.service.process.pid, signal.SIGSTOP)
        return "click(4)"

    pool = ModelPool([SCRIPTED], backends={"replay": Scripted([stop_then_click])})
    agent = holder["agent"] = WebAgent(router="always-small", pool=pool, memory=store, max_steps=3)

    async def play() -> tuple[Any, float, list[int]]:
        started = time.monotonic()
        stopped = await agent.run_episode("click-test", 0)
        took = time.monotonic() - started
        return stopped, took, await asyncio.to_thread(_gone_within, 3.0)

    try:
        stopped, took, left = asyncio.run(play())
    finally:
        agent.close()
    assert stopped.status == "failed" and "the browser did not answer within 1.5 s" in (stopped.error or ""), stopped.error
    assert took < 6, f"{took:.1f}s"
    assert left == []


@pytest.mark.browser
def test_a_deadline_cuts_a_hung_action_and_the_other_worker_plays_on(chromium, store, monkeypatch):  # noqa: F811
    """`--concurrency 2`, one page hung: the other worker plays its episode to the end within its
    own budget (it stalled behind the hung click before, and ran out of time); the hung click is cut
    at its deadline (budget_exhausted, step and cost stored, was failed at the page-load limit), its
    browser killed, and that slot's next episode gets a fresh one."""
    import re

    monkeypatch.setenv("AGENTROUTE_WEB_PAGE_LOAD_S", "10")  # chromedriver would wait 10 s on the page
    holder: dict[str, Any] = {}
    budget = 2.0

    async def hang_then_click() -> str:
        await asyncio.sleep(0.3)  # the page's loop starts
        holder.setdefault("hung", asyncio.Event()).set()
        return "click(4)"

    async def once_hung(action: str) -> str:  # the other worker acts while the click-test page hangs
        await asyncio.wait_for(holder.setdefault("hung", asyncio.Event()).wait(), 5)
        await asyncio.sleep(0.2)
        return action

    def answer(observation: str) -> Any:
        if "Task: Click the button." in observation:  # click-test: hang its page (once), then click
            if holder.setdefault("hangs", 1):
                holder["hangs"] = 0
                session = next(s for s in holder["agent"]._sessions.values() if s.task == "click-test")
                session.driver.execute_script(HUNG)
                return hang_then_click()
            return "click(4)"
        wanted = re.search(r'Task: Click on the "(.*)" button', observation)
        ref = re.search(rf'\[(\d+)\] button "{re.escape(wanted.group(1))}"', observation) if wanted else None
        return once_hung(f"click({ref.group(1)})" if ref else "done()")

    pool = ModelPool([SCRIPTED], backends={"replay": Scripted([answer])})
    agent = holder["agent"] = WebAgent(
        router="always-small", pool=pool, memory=store, max_steps=3, budget=Budget(seconds=budget)
    )

    async def play() -> tuple[Any, Any, float, list[int], Any]:
        hung, other = await agent.run_many([("click-test", 0), ("click-button", 0)], concurrency=2)
        ended = time.time()
        for key in [k for k, s in agent._sessions.items() if s.task == "click-button"]:
            await asyncio.to_thread(agent._sessions.pop(key).close)
        left = await asyncio.to_thread(_gone_within, 3.0)  # the hung browser was killed
        slot = next(int(k.split("/")[0]) for k, s in agent._sessions.items() if s.task == "click-test")
        return hung, other, ended, left, await agent.run_episode("click-test", 1, slot=slot)

    try:
        hung, other, ended, left, after = asyncio.run(play())
    finally:
        agent.close()
    assert (other.status, other.success) == ("done", True), (other.status, other.error)
    record = store.get_task(hung.task_id)
    overrun = ended - (record.task.created_at.timestamp() + budget)
    assert hung.status == "budget_exhausted" and record.task.status == "budget_exhausted", (hung.status, hung.error)
    print(f"overrun {overrun:.3f}s")
    assert overrun < 0.6, f"the episode ended {overrun:.3f}s past its deadline"
    assert len(record.steps) == 1 and "cut off at the task's deadline" in (record.steps[0].error or "")
    assert record.task.cost_usd > 0 and hung.cost_usd == record.task.cost_usd
    assert left == []
    assert (after.status, after.success) == ("done", True)  # a fresh browser for the next episode
