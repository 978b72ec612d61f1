"""A browser folder left in TMPDIR by a `run web` that was `kill -9`ed (or crashed) is removed by
the next browser start: before, each such run left one folder per browser (Chromium's profile, a
few MB) in /tmp for good, and a Chromium still running in one ran on.

Real folders and processes in a TMPDIR of the test's own, as the browser start sees them; no
browser needed (Linux: owners are looked up in /proc).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agentroute.web import env

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="looks processes up in /proc (Linux)")


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=30)  # fmt: skip
    return int(gone.stdout)


def test_folders_of_gone_processes_are_removed_and_their_browsers_killed(tmp_path: Path, monkeypatch) -> None:
    left = tmp_path / f"agentroute-{_dead_pid()}-abc123"
    (left / "org.chromium.Chromium.x").mkdir(parents=True)
    mine = tmp_path / f"agentroute-{os.getpid()}-def456"  # this process's own browser: kept
    mine.mkdir()
    other = tmp_path / "agentroute-pg-xyz"  # not a browser's
    other.mkdir()
    browser = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               env={**os.environ, "TMPDIR": str(left)})  # fmt: skip
    monkeypatch.setattr(env, "_SWEPT", set())
    try:
        assert env._remove_left_behind(str(tmp_path)) == [str(left)]
        assert browser.poll() is not None  # killed, and reaped
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])
        left.mkdir()
        assert env._remove_left_behind(str(tmp_path)) == []  # once a process
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait()


@pytest.mark.browser
def test_a_browser_start_removes_a_killed_runs_folder_and_names_its_own(chromium, monkeypatch) -> None:
    """The user's path: a session started after a killed run, in the same TMPDIR."""
    from agentroute.web.env import MiniWoBSession

    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Chromium's socket path must fit
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(env, "_SWEPT", set())
    left = tmp / f"agentroute-{_dead_pid()}-abc123"
    (left / "org.chromium.Chromium.x").mkdir(parents=True)
    try:
        with MiniWoBSession("click-test") as session:
            assert session.reset(seed=0) is not None
            assert [p.name.startswith(f"agentroute-{os.getpid()}-") for p in tmp.iterdir()] == [True]
        assert list(tmp.iterdir()) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
