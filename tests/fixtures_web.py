"""Fixtures of the web-agent tests: a real headless Chromium (skipped with the reason when Debian's
``chromium`` + ``chromium-driver`` or the ``web`` extra are missing) and a SQLite memory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest


@pytest.fixture(scope="module")
def chromium() -> None:
    pytest.importorskip("miniwob")
    pytest.importorskip("selenium")
    from agentroute.web.env import BrowserNotFoundError, find_chromium

    try:
        find_chromium()
    except BrowserNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def store(tmp_path):
    """A SQLite memory in the test's folder (``tests/test_memory.py`` has its own ``store``)."""
    from agentroute.memory import open_memory

    memory = open_memory(f"sqlite:///{tmp_path / 'web.db'}")
    yield memory
    memory.close()


def still_running(session: int, within_s: float = 10.0) -> list[int]:
    """The processes of ``session`` (a job started with ``start_new_session=True``) still running
    after waiting up to ``within_s`` for them to end (a SIGKILLed Chromium takes a while to exit on
    a loaded machine; zombies are dead, and this container's init may not reap them). Those are then
    SIGKILLed, so that a failing test leaves none running."""
    deadline = time.monotonic() + within_s
    while True:
        found = subprocess.run(["pgrep", "-s", str(session), "-r", "R,S,D,T"], capture_output=True, text=True)
        left = [int(pid) for pid in found.stdout.split()]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture
def miniwob_server():
    """The task pages the ``miniwob`` package ships, served over HTTP on 127.0.0.1 as a user's own
    MiniWoB++ server would: ``server.base`` is the base URL (``…/miniwob/``), ``server.paths`` the
    paths it was asked for."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    from tests.fixtures_reply_server import LoopbackServer

    html = pytest.importorskip("miniwob.selenium_instance").HTML_DIR

    class Pages(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.server.paths.append(self.path)  # type: ignore[attr-defined]
            super().do_GET()

    with LoopbackServer(functools.partial(Pages, directory=str(html))) as server:  # type: ignore[arg-type]
        server.paths = []  # type: ignore[attr-defined]
        server.base = f"http://127.0.0.1:{server.server_address[1]}/miniwob/"  # type: ignore[attr-defined]
        yield server
