"""A cancel that reaches an episode while its first screenshot is taken (off the loop since the first
page's screenshot moved to a worker thread) closes the task it started: it stayed `running` in the
memory (seen under load in `test_an_error_in_one_worker_stops_the_others_inside_a_running_loop`)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agentroute.web import agent as web_agent
from tests.fixtures_web import chromium, store  # noqa: F401 - fixtures: a real Chromium, a SQLite memory


@pytest.mark.browser
def test_a_cancel_during_the_first_screenshot_leaves_no_task_running(chromium, store, tmp_path, monkeypatch):  # noqa: F811
    shooting = threading.Event()
    real_shot = web_agent.Episode.shot

    def slow_first_shot(self, label: str) -> None:  # the real screenshot, made slow as on a loaded machine
        real_shot(self, label)
        if label == "step00":
            shooting.set()
            threading.Event().wait(1.5)

    monkeypatch.setattr(web_agent.Episode, "shot", slow_first_shot)

    async def session() -> None:
        agent = web_agent.WebAgent(router="always-skill", memory=store, screenshots=tmp_path / "shots")
        try:
            episode = asyncio.ensure_future(agent.run_episode("click-test", 0))
            while not shooting.is_set():
                await asyncio.sleep(0.02)
            episode.cancel()
            with pytest.raises(asyncio.CancelledError):
                await episode
        finally:
            await agent.aclose()

    asyncio.run(session())
    stats = store.stats()
    assert stats["tasks_total"] == 1
    assert stats["tasks"].get("running", 0) == 0 and stats["tasks"].get("interrupted", 0) == 1, stats
