"""A Ctrl-C in a terminal signals the whole job: chromedriver dies of it at once, and the episode's
thread, its command (or its browser's start) cut off, closes the browser — often before the event
loop has run the handler that notes the stop (``note_stop_signal``). That close swept the Chromium
processes still exiting and warned "killed N browser processes left by a lost chromedriver" (the
Ctrl-C test of tests/test_web_agent.py failed 1 run in 6, 5 in 6 once Chromium's start made no
requests of its own). A chromedriver that died of SIGINT or SIGTERM is now a stop, not a lost one.

Here chromedriver alone gets the SIGINT (Chromium stays up, as a slow-exiting one is at the sweep)
and nothing has noted a stop: the sweep kills Chromium without the warning."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from tests.fixtures_reply_server import LoopbackServer

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not os.path.isdir("/proc"), reason="/proc (Linux)")]


@pytest.fixture
def short_tmp(monkeypatch):
    """A short TMPDIR for the browser's folder (Chromium's socket path must fit), removed after."""
    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    os.rmdir(tmp)  # empty: the browser's folder was removed


def _chromedriver_of(folder: str) -> int:
    """The pid of the chromedriver started for the browser folder ``folder`` (``TMPDIR=folder``)."""
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                program = os.path.basename(f.read().split(b"\0")[0])
            if f"TMPDIR={folder}".encode() in environ and program == b"chromedriver":
                return int(name)
    raise AssertionError(f"no chromedriver runs for {folder}")


def _sigint_and_wait(pid: int) -> None:
    from agentroute.web.env import _running

    os.kill(pid, signal.SIGINT)  # what a terminal's Ctrl-C sends chromedriver
    deadline = time.monotonic() + 30
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_ctrl_c_that_killed_chromedriver_mid_episode_is_no_lost_chromedriver(
    chromium, short_tmp, monkeypatch, caplog
) -> None:
    from agentroute.web import env

    monkeypatch.setattr(env, "_SIGNALLED", False)  # the loop's handler has not run yet
    session = env.MiniWoBSession("click-test")
    try:
        session.reset(0)
        folder = session._env.instance._tmp
        with caplog.at_level(logging.WARNING, logger="agentroute"):
            _sigint_and_wait(_chromedriver_of(folder))
            session.close()  # as the episode's thread does when its command fails
        assert "lost chromedriver" not in caplog.text
        assert not os.path.exists(folder)
        assert env._kill_strays(folder, warn=False) == []  # and no Chromium process of it runs on
    finally:
        session.shutdown()


class _HeldPage(SimpleHTTPRequestHandler):
    """The ``miniwob`` package's pages; Chromium's request for the task page (not the Python probe's)
    sets ``server.asked`` and waits for ``server.release``: the browser is mid-start meanwhile."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if (
            self.path.endswith("click-test.html")
            and "python" not in self.headers.get("User-Agent", "").lower()
        ):
            self.server.asked.set()  # type: ignore[attr-defined]
            self.server.release.wait(30)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def test_a_ctrl_c_that_killed_chromedriver_mid_start_is_no_lost_chromedriver(
    chromium, short_tmp, monkeypatch, caplog
) -> None:
    from agentroute.web import env

    html = pytest.importorskip("miniwob.selenium_instance").HTML_DIR
    monkeypatch.setattr(env, "_SIGNALLED", False)
    failed: list[BaseException] = []
    with LoopbackServer(functools.partial(_HeldPage, directory=str(html))) as server:  # type: ignore[arg-type]
        server.asked, server.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
        session = env.MiniWoBSession(
            "click-test", miniwob_url=f"http://127.0.0.1:{server.server_address[1]}/miniwob/"
        )

        def start() -> None:
            try:
                session.open()
            except Exception as exc:  # noqa: BLE001 - the start's outcome, asserted below
                failed.append(exc)

        thread = threading.Thread(target=start)
        try:
            with caplog.at_level(logging.WARNING, logger="agentroute"):
                thread.start()
                assert server.asked.wait(60), "Chromium never asked for the task page"  # type: ignore[attr-defined]
                folder = session._starting._tmp
                _sigint_and_wait(_chromedriver_of(folder))
                server.release.set()  # type: ignore[attr-defined]
                thread.join(60)
            assert [type(e).__name__ for e in failed] == ["BrowserCrashedError"]
            assert "lost chromedriver" not in caplog.text
            assert not os.path.exists(folder)
            assert env._kill_strays(folder, warn=False) == []
        finally:
            server.release.set()  # type: ignore[attr-defined]
            thread.join(60)
            session.shutdown()
