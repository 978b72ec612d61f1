"""Ctrl-C while the first task page loads (a page server that never finishes its answer) ends the
program at once: the browser being started is killed, its page load fails, its folder is removed.
Before, the close waited for the start, which waited for the page-load limit (60 s here)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures_reply_server import POLL_S
from tests.fixtures_web import chromium, still_running  # noqa: F401 (fixtures)
from tests.test_web_h61_user_paths import Hanging

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]

#: The Python API as a script writes it: Ctrl-C reaches asyncio.run inside the agent's `with`.
PROGRAM = """
import asyncio, sys
from agentroute.memory import open_memory
from agentroute.web import WebAgent

with WebAgent(router="always-skill", memory=open_memory(sys.argv[1]), miniwob_url=sys.argv[2]) as agent:
    asyncio.run(agent.run_episode("click-test", 0))
"""


def _interrupt_during_first_page_load(command: list[str]) -> tuple[subprocess.Popen[str], str, float, list[int], list[str]]:
    """Run ``command`` (``{url}`` is the hanging page server's base URL) in a session of its own,
    SIGINT it once Chromium asked for the task page; its process, stderr, seconds from the signal to
    its end, its processes still running and what it left in its TMPDIR."""
    server = Hanging()
    threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Chromium's socket path must fit
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    proc = subprocess.Popen(
        [part.format(url=url) for part in command],
        env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "AGENTROUTE_WEB_PAGE_LOAD_S": "60"},
        cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not server.asked.wait(0.1):  # the page load is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=30)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGINT)  # the program alone, as `kill -INT`
        sent = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - sent
        left = still_running(proc.pid, within_s=2)
        folders = sorted(p.name for p in tmp.iterdir())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        still_running(proc.pid, within_s=0)
        server.release.set()
        server.shutdown()
        server.server_close()
        shutil.rmtree(tmp, ignore_errors=True)
    return proc, err, took, left, folders


def test_ctrl_c_during_the_first_page_load_of_run_web_exits_130_at_once_leaving_nothing(chromium, tmp_path):  # noqa: F811
    proc, err, took, left, folders = _interrupt_during_first_page_load(
        [sys.executable, "-m", "agentroute", "run", "web", "--miniwob-url", "{url}", "--tasks", "click-test",
         "--episodes", "1", "--router", "always-skill", "--memory", f"sqlite:///{tmp_path / 'web.db'}"]
    )  # fmt: skip
    assert proc.returncode == 130, err
    assert took < 5, f"Ctrl-C took {took:.1f} s"  # 0.4-0.9 s on a 2-core box at load 4 (was 60 s: the page-load limit)
    assert left == [] and folders == [], (left, folders)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped by SIGINT: 0 of 1 episodes finished"), lines


def test_ctrl_c_during_the_first_page_load_of_run_episode_ends_the_script_at_once_leaving_nothing(chromium, tmp_path):  # noqa: F811
    proc, err, took, left, folders = _interrupt_during_first_page_load(
        [sys.executable, "-c", PROGRAM, f"sqlite:///{tmp_path / 'web.db'}", "{url}"]
    )
    assert proc.returncode == -signal.SIGINT, err  # KeyboardInterrupt, as Python ends on it
    assert took < 5, f"Ctrl-C took {took:.1f} s"
    assert left == [] and folders == [], (left, folders)
    assert err.rstrip().endswith("KeyboardInterrupt"), err[-2000:]
