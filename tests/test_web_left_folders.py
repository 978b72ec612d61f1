"""A browser folder left in TMPDIR by a `run web` that was `kill -9`ed (or crashed) is removed by
the next browser start: before, each such run left one folder per browser (Chromium's profile, a
few MB) in /tmp for good, and a Chromium still running in one ran on.

Real folders, owner locks and processes in a TMPDIR of the test's own, as the browser start sees
them; no browser needed (Linux: a left Chromium is found in /proc).
"""

from __future__ import annotations

import fcntl
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


def _folder(tmp: Path, pid: int, name: str, *, locked: bool) -> tuple[Path, int | None]:
    """A browser folder as its process makes it: its owner file, held locked while ``locked`` (the
    descriptor returned: its own open file, as another process's would be)."""
    folder = tmp / f"agentroute-{pid}-{name}"
    (folder / "org.chromium.Chromium.x").mkdir(parents=True)
    fd = os.open(folder / env._OWNER_LOCK, os.O_CREAT | os.O_RDWR)
    if locked:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return folder, fd
    os.close(fd)  # a kill -9: the kernel let go of the lock
    return folder, None


def test_folders_of_gone_processes_are_removed_and_their_browsers_killed(tmp_path: Path, monkeypatch) -> None:
    left, _ = _folder(tmp_path, _dead_pid(), "abc123", locked=False)
    mine, _ = _folder(tmp_path, os.getpid(), "def456", locked=False)  # the pid lives, but is no owner (reused)
    other = tmp_path / "agentroute-pg-xyz"  # not a browser's
    other.mkdir()
    making = tmp_path / f"agentroute-{_dead_pid()}-ghi789"  # no owner file (yet): left alone
    making.mkdir()
    browser = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               env={**os.environ, "TMPDIR": str(left)})  # fmt: skip
    monkeypatch.setattr(env, "_SWEPT", set())
    try:
        assert sorted(env._remove_left_behind(str(tmp_path))) == sorted([str(left), str(mine)])
        assert browser.poll() is not None  # killed, and reaped
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([making.name, other.name])
        _folder(tmp_path, _dead_pid(), "abc123", locked=False)
        assert env._remove_left_behind(str(tmp_path)) == []  # once a process
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait()


def test_a_folder_whose_owner_lives_elsewhere_is_kept_and_its_browser_runs_on(tmp_path: Path, monkeypatch) -> None:
    """A live process this /proc does not show (another pid namespace sharing /tmp, a container):
    its pid looks gone, but it holds its folder's lock. Was: its profile removed and its Chromium
    killed by the next browser start of any agentroute on the machine."""
    held, fd = _folder(tmp_path, _dead_pid(), "abc123", locked=True)
    browser = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               env={**os.environ, "TMPDIR": str(held)})  # fmt: skip
    monkeypatch.setattr(env, "_SWEPT", set())
    try:
        assert env._remove_left_behind(str(tmp_path)) == []
        assert browser.poll() is None and (held / "org.chromium.Chromium.x").is_dir()
    finally:
        assert fd is not None
        os.close(fd)
        browser.kill()
        browser.wait()


def test_a_browser_folder_is_locked_by_its_process_until_closed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder, fd = env._own_folder()
    assert Path(folder).name.startswith(f"agentroute-{os.getpid()}-")
    monkeypatch.setattr(env, "_SWEPT", set())
    assert env._remove_left_behind(str(tmp_path)) == []
    assert fd is not None
    os.close(fd)
    monkeypatch.setattr(env, "_SWEPT", set())
    assert env._remove_left_behind(str(tmp_path)) == [folder]


@pytest.mark.browser
def test_a_browser_start_removes_a_killed_runs_folder_and_names_its_own(chromium, monkeypatch) -> None:
    """The user's path: a session started after a killed run, in the same TMPDIR."""
    from agentroute.web.env import MiniWoBSession

    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Chromium's socket path must fit
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(env, "_SWEPT", set())
    _folder(tmp, _dead_pid(), "abc123", locked=False)
    try:
        with MiniWoBSession("click-test") as session:
            assert session.reset(seed=0) is not None
            assert [p.name.startswith(f"agentroute-{os.getpid()}-") for p in tmp.iterdir()] == [True]
        assert list(tmp.iterdir()) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
