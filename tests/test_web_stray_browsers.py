"""The browser processes that closing a web session kills (those of a lost chromedriver) are gone
when the close returns: it sent SIGKILL and returned at once, so a still-dying Chromium could hold
its profile folder and port, and a killed child of this process (chromedriver) stayed a zombie.

Real processes started with a browser folder as their TMPDIR, as chromedriver starts Chromium; no
browser needed (Linux: the processes are found through /proc).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agentroute.web.env import _kill_strays, _remove

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds processes through /proc (Linux)")

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _state(pid: int) -> str | None:
    """The process's state letter (``Z``: a zombie), ``None`` once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_killed_strays_are_gone_and_a_child_among_them_is_reaped() -> None:
    folder = tempfile.mkdtemp(prefix="agentroute-")
    env = {**os.environ, "TMPDIR": folder}
    child = subprocess.Popen(SLEEP, env=env)  # as chromedriver: this process's child
    # as Chromium: started by that child, so not this process's (its parent reaps it, or init)
    orphan = subprocess.run([sys.executable, "-c", f"import subprocess as s; print(s.Popen({SLEEP!r}, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"],
                            env=env, capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    grandchild = int(orphan.stdout)
    try:
        deadline = time.monotonic() + 10
        while _state(grandchild) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        killed = _kill_strays(folder)
        took = time.monotonic() - started
        assert sorted(killed) == sorted([child.pid, grandchild])
        assert _state(child.pid) is None, _state(child.pid)  # reaped: was left a zombie ("Z")
        assert _state(grandchild) in (None, "Z")  # exited (init reaps it in its time)
        assert took < 2, took
    finally:
        for pid in (child.pid, grandchild):
            if _state(pid) not in (None, "Z"):
                os.kill(pid, 9)
        if child.poll() is None:
            child.kill()
            child.wait()
        _remove(folder)
    assert child.poll() is not None
    assert not os.path.exists(folder)
