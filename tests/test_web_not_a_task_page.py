"""``run web --miniwob-url`` naming a folder that holds no MiniWoB task (the server answers 404), or a
page that is no task (no MiniWoB script): the run fails at once, in the same one line. Before, it
waited the full 10 s for the task's start screen first (measured 14.9 s vs 4.7 s for a run that
plays an episode)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_web import chromium, miniwob_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def _web(url: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "agentroute", "run", "web", "--miniwob-url", url, "--tasks", "click-test",
         "--episodes", "1", "--router", "always-skill", "--memory", "sqlite:///web.db", "--out", "out.jsonl"],
        cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    return proc, time.monotonic() - started


def _fails_fast(url: str, why: str, tmp_path: Path, played_s: float) -> None:
    (tmp_path / "bad").mkdir()
    proc, took = _web(url, tmp_path / "bad")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert took < played_s + 5, (took, played_s)  # was: the episode's run + the 10 s wait, and more
    assert lines[0].startswith(f"error: the page {url}click-test.html showed no MiniWoB task: {why} "), lines
    assert "(is run web --miniwob-url the base URL of MiniWoB++ task pages?)" in lines[0], lines


@pytest.fixture
def played_s(chromium, miniwob_server, tmp_path: Path) -> float:  # noqa: F811
    """Seconds a run that plays its episode takes here now (the machine's load varies)."""
    (tmp_path / "good").mkdir()
    proc, took = _web(miniwob_server.base, tmp_path / "good")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return took


def test_a_folder_of_no_task_pages_fails_at_once(miniwob_server, played_s: float, tmp_path: Path) -> None:  # noqa: F811
    _fails_fast(miniwob_server.base.replace("/miniwob/", "/missing/"), "HTTP 404", tmp_path, played_s)
    assert "/missing/click-test.html" in miniwob_server.paths


def test_a_page_with_no_miniwob_script_fails_at_once(played_s: float, tmp_path: Path) -> None:
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "click-test.html").write_text("<html><body><p>Our intranet</p></body></html>")
    _fails_fast(folder.as_uri() + "/", "it runs no MiniWoB script (core.js)", tmp_path, played_s)
