"""The web agent on a page that opens a dialog (``alert``, ``confirm``) mid-episode: it is answered
OK, as a user would, and the episode goes on in the same browser instead of failing as a dead one."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from tests.fixtures_web import chromium, store  # noqa: F401 (fixtures)
from tests.test_web_h61_user_paths import _scripted_agent
from tests.test_web_user_paths import _browsers_below

DIALOGS = [
    "setTimeout(function () { alert('saved'); }, 0);",  # opens while the model thinks
    "document.querySelector('#subbtn').addEventListener('click', () => confirm('sure?'), {capture: true});",
]


@pytest.mark.browser
def test_a_page_dialog_is_answered_and_the_episode_goes_on_in_the_same_browser(chromium, store):  # noqa: F811
    holder: dict[str, Any] = {"drivers": []}

    def dialog_then_click(script: str):
        def answer(observation: str) -> str:
            driver = holder["agent"].session("click-test").driver
            holder["drivers"].append(driver)
            driver.execute_script(script)
            time.sleep(0.2)
            return "click(4)"

        return answer

    agent = holder["agent"] = _scripted_agent(store, [dialog_then_click(s) for s in DIALOGS])
    try:
        results = asyncio.run(agent.run_many([("click-test", 0), ("click-test", 1)]))
        holder["drivers"].append(agent.session("click-test").driver)
    finally:
        agent.close()
    for result in results:
        assert (result.status, result.success, result.error) == ("done", True, None), result.error
        assert store.get_task(result.task_id).task.status == "done"
    assert len({id(d) for d in holder["drivers"]}) == 1  # never replaced as a dead browser
    assert _browsers_below(os.getpid()) == []
