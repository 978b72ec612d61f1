"""The web agent where pages misbehave: a task page that never loads, a budget in dollars that runs
out midway (`run web --budget-usd` against a real loopback model server that counts its calls)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fixtures_reply_server import POLL_S
from tests.fixtures_web import chromium, store  # noqa: F401 (fixtures)
from tests.test_strategies_user_paths import Answers
from tests.test_web_user_paths import _browsers_below

browser = pytest.mark.browser


class _Silent(BaseHTTPRequestHandler):
    """Accepts a request and answers nothing until the test ends (at most a minute)."""

    server: Hanging

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if not self.headers.get("User-Agent", "").startswith("Python-urllib"):  # the task page probe's is not the browser's
            self.server.asked.set()
        self.server.release.wait(60)


class Hanging(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Silent)
        self.asked, self.release = threading.Event(), threading.Event()  # asked: Chromium asked for a page


@browser
def test_a_task_page_that_never_loads_fails_the_episode_in_seconds_and_leaves_no_browser(chromium, store, monkeypatch):  # noqa: F811
    import miniwob.selenium_instance

    import agentroute.web.env as env
    from agentroute.web import WebAgent

    server = Hanging()
    threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
    try:
        # the pages come from a server that accepts the connection and never answers
        monkeypatch.setattr(miniwob.selenium_instance, "DEFAULT_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        monkeypatch.setattr(env, "PAGE_LOAD_TIMEOUT_S", 3.0, raising=False)
        started = time.monotonic()
        with WebAgent(router="always-skill", memory=store, max_steps=2) as agent:
            result = asyncio.run(agent.run_episode("click-test", seed=0))
        elapsed = time.monotonic() - started
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
    assert server.asked.is_set()
    assert result.status == "failed" and "did not load within 3 s" in (result.error or ""), result.error
    assert elapsed < 30, elapsed  # Selenium's own limit is 300 s
    assert store.get_task(result.task_id).task.status == "failed"
    assert _browsers_below(os.getpid()) == []


@browser
def test_run_web_budget_usd_running_out_midway_ends_budget_exhausted_without_an_extra_call(chromium, tmp_path):  # noqa: F811
    """A model card on a loopback server whose answers are illegal actions (failed, charged steps):
    the dollar budget runs out after a few steps, the episode ends `budget_exhausted`, and the
    server saw exactly the calls the memory recorded, their cost within the budget."""
    server = Answers(["click(999)"])
    threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
    try:
        (tmp_path / "pool.yaml").write_text(
            "models:\n  - id: paid\n    backend: openai\n    model: paid\n"
            f"    base_url: {server.url}\n    input_price: 1.0\n    output_price: 1.0\n    max_tokens: 16\n"
        )
        budget = 0.0012
        proc = subprocess.run(
            [sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--episodes", "1",
             "--router", "always-small", "--pool", "pool.yaml", "--max-steps", "50", "--budget-usd", str(budget),
             "--memory", "sqlite:///web.db", "--out", "out.jsonl"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_API_KEY": "x"},
        )
        calls = server.calls
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    row = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert row["status"] == "budget_exhausted", row
    assert 1 < row["steps"] == calls == row["failed_steps"], (row, calls)  # no call beyond the last step
    assert 0 < row["cost_usd"] <= budget
    from agentroute.memory import open_memory

    memory = open_memory(f"sqlite:///{tmp_path / 'web.db'}")
    try:
        record = memory.get_task(row["task_id"])
        assert record.task.status == "budget_exhausted" and len(record.steps) == calls
        assert record.task.cost_usd == pytest.approx(sum(s.cost_usd for s in record.steps)) and record.task.cost_usd <= budget
    finally:
        memory.close()


def _scripted_agent(store, answers):  # noqa: F811
    from agentroute.pool import ModelPool
    from agentroute.web import WebAgent
    from tests.test_web_agent import SCRIPTED, Scripted

    pool = ModelPool([SCRIPTED], backends={"replay": Scripted(answers)})
    return WebAgent(router="always-small", pool=pool, memory=store, max_steps=3)


@browser
def test_a_page_that_navigates_away_mid_episode_fails_it_saying_so_and_the_next_episode_plays(chromium, store):  # noqa: F811
    holder: dict[str, Any] = {}

    def leave_then_click(observation: str) -> str:
        holder["agent"].session("click-test").driver.execute_script("window.location.href = 'about:blank';")
        time.sleep(0.3)
        return "click(4)"

    agent = holder["agent"] = _scripted_agent(store, [leave_then_click, "click(4)"])
    try:
        left, after = asyncio.run(agent.run_many([("click-test", 0), ("click-test", 1)]))
    finally:
        agent.close()
    assert left.status == "failed" and "the page left the task (now at about:blank)" in (left.error or ""), left.error
    assert store.get_task(left.task_id).task.status == "failed"
    assert (after.status, after.success) == ("done", True)
    assert _browsers_below(os.getpid()) == []


@browser
def test_an_element_removed_while_the_model_thinks_does_not_crash_the_episode(chromium, store):  # noqa: F811
    """The button goes away between the observation and the click: MiniWoB clicks the detached
    element (its handler still runs); nothing is mistaken for a dead browser."""
    holder: dict[str, Any] = {}

    def remove_then_click(observation: str) -> str:
        holder["agent"].session("click-test").driver.execute_script("document.querySelector('#subbtn').remove();")
        return "click(4)"

    agent = holder["agent"] = _scripted_agent(store, [remove_then_click])
    try:
        result = asyncio.run(agent.run_episode("click-test", 0))
        assert agent.session("click-test").running
    finally:
        agent.close()
    assert result.status == "done" and result.error is None
    assert _browsers_below(os.getpid()) == []
