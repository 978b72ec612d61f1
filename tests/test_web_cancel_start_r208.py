"""A cancel (Ctrl-C, a task's deadline) of :meth:`MiniWoBSession.starting` that lands before the
start under way reached its browser — Python importing Selenium, the browser's folder being made,
or the worker thread not yet running — ends at once, and that start stops at its browser: nothing
is left running. Before, the cancel waited on the event loop for the start's lock, i.e. for the
whole start, up to the page-load limit on a page that never loads (21 s here, and `run web` stopped
1.2 s after its launch exited 21.2 s after the SIGINT)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures_reply_server import POLL_S
from tests.fixtures_web import chromium  # noqa: F401 (fixture)
from tests.test_web_h61_user_paths import Hanging

pytestmark = pytest.mark.browser

#: The page-load limit: what the cancel used to wait for.
PAGE_LOAD_S = 20.0


@pytest.mark.parametrize("when", ["before-its-thread-runs", "once-it-holds-the-lock"])
def test_a_cancel_before_the_browser_starts_ends_at_once_and_starts_none(
    chromium,  # noqa: F811
    monkeypatch,
    when: str,
) -> None:
    from agentroute.web.env import MiniWoBSession

    server = Hanging()  # accepts the connection, never answers: the page load takes the full limit
    threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Chromium's socket path must fit
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    session = MiniWoBSession(
        "click-test",
        miniwob_url=f"http://127.0.0.1:{server.server_address[1]}/",
        page_load_timeout_s=PAGE_LOAD_S,
    )

    async def cancel_the_start() -> float:
        task = asyncio.create_task(session.starting(session.open))
        await asyncio.sleep(0)  # the start is handed to its worker thread
        if when == "once-it-holds-the-lock":
            while not session._lock.locked():
                await asyncio.sleep(0.001)
        sent = time.monotonic()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return time.monotonic() - sent

    try:
        took = asyncio.run(cancel_the_start())  # returns once its worker thread ended
        assert took < 3.0, f"the cancel took {took:.1f} s"
        assert not session.running
        deadline = time.monotonic() + 30
        while any(t.name.startswith("close-browser-") for t in threading.enumerate()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [p.name for p in tmp.iterdir() if p.name.startswith("agentroute-")] == []
    finally:
        session.shutdown()
        server.shutdown()
        server.server_close()
        for leftover in tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.rmdir() if leftover.is_dir() else leftover.unlink()
        with contextlib.suppress(OSError):
            tmp.rmdir()
