"""A page that keeps its renderer busy past the page-load limit (a huge DOM, a script that loops)
fails its episode with a reason that names the limit and how to set it, not chromedriver's
"Timed out receiving message from renderer", and leaves no browser running."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from tests.fixtures_web import chromium, store  # noqa: F401 (fixtures)
from tests.test_web_h61_user_paths import _scripted_agent
from tests.test_web_user_paths import _browsers_below

BUSY = "setTimeout(() => { const t = Date.now(); while (Date.now() - t < 3000); }, 100);"


@pytest.mark.browser
def test_a_page_busy_past_the_limit_fails_its_episode_naming_the_limit(chromium, store, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AGENTROUTE_WEB_PAGE_LOAD_S", "1.5")
    holder: dict[str, Any] = {}

    def busy_then_click(observation: str) -> str:
        holder["agent"].session("click-test").driver.execute_script(BUSY)
        time.sleep(0.3)
        return "click(4)"

    agent = holder["agent"] = _scripted_agent(store, [busy_then_click, "click(4)"])
    try:
        result = asyncio.run(agent.run_episode("click-test", 0))
    finally:
        agent.close()
    assert result.status == "failed", [(s.status, s.error) for s in store.get_task(result.task_id).steps]
    assert "click(4) on 'click-test' failed: the page did not answer within 1.5 s" in (result.error or ""), result.error
    assert "--page-load-timeout" in (result.error or "") and "renderer" not in (result.error or "")
    record = store.get_task(result.task_id)
    assert record.task.status == "failed" and "did not answer within 1.5 s" in (record.steps[0].error or "")
    assert _browsers_below(os.getpid()) == []
