"""``run web --miniwob-url`` naming a folder that holds no MiniWoB task (the server answers 404, or a
``file://`` folder without the task's file): the run fails at once, in one line naming the page
and why. Before, it waited the full 10 s for the task's start screen after the page loaded (a run
on a 404 folder: 14.9 s vs 4.7 s for one that plays an episode). The page's HTTP status is asked
beside the browser's start, in a thread that nothing waits for: a stop never waits on it
(tests/test_web_ctrl_c_first_page_load.py: a server that never answers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_web import chromium, miniwob_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

#: The wait for the task's start screen that a page with no task used to take in full.
START_SCREEN_WAIT_S = 10.0


def _web(url: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentroute", "run", "web", "--miniwob-url", url, "--tasks", "click-test",
         "--episodes", "1", "--router", "always-skill", "--memory", "sqlite:///web.db", "--out", "out.jsonl"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _one_line_naming(proc: subprocess.Popen[str], url: str, why: str, cwd: Path) -> None:
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith(f"error: the page {url}click-test.html showed no MiniWoB task: {why} "), lines
    assert "(is run web --miniwob-url the base URL of MiniWoB++ task pages?)" in lines[0], lines
    assert "No episode was played" in lines[0] and not (cwd / "out.jsonl").exists()


def test_a_folder_of_no_task_pages_fails_at_once(chromium, miniwob_server, tmp_path: Path) -> None:  # noqa: F811
    url = miniwob_server.base.replace("/miniwob/", "/missing/")
    proc = _web(url, tmp_path)
    try:
        while "/missing/click-test.html" not in miniwob_server.paths and proc.poll() is None:
            time.sleep(0.02)
        asked = time.monotonic()  # the page was asked for (its load, or its status)
        proc.wait(timeout=300)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
    _one_line_naming(proc, url, "HTTP 404", tmp_path)
    assert took < START_SCREEN_WAIT_S, f"exited {took:.1f} s after the page was asked for"


def test_a_file_folder_without_the_task_fails_before_any_browser_starts(chromium, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "pages"
    folder.mkdir()
    started = time.monotonic()
    proc = _web(folder.as_uri() + "/", tmp_path)
    _one_line_naming(proc, folder.as_uri() + "/", "no such file", tmp_path)
    took = time.monotonic() - started
    assert took < START_SCREEN_WAIT_S, f"took {took:.1f} s"  # no browser: the import and the check
