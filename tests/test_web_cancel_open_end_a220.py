"""A cancel (Ctrl-C, a task's deadline) of :meth:`MiniWoBSession.starting` that lands as
:meth:`MiniWoBSession.open` ends — its browser up, its check for a cancel passed, its lock not yet
released — found the lock held and left the browser to that start, which had already checked: the
browser stayed up, ``running``, until the session's shutdown (the program's exit). Now the start
checks for a cancel once its lock is released, and closes the browser at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def test_a_cancel_as_open_ends_closes_its_browser_at_once(chromium, monkeypatch) -> None:
    from agentroute.web import env

    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Chromium's socket path must fit
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    session = env.MiniWoBSession("click-test")
    up, go_on = threading.Event(), threading.Event()
    folders: list[str] = []

    class _Live(weakref.WeakSet):  # type: ignore[type-arg]
        """open() records its session here with its browser up and its lock held: it waits there
        until the cancel has been handled."""

        def add(self, item: Any) -> None:
            folders.append(session._env.instance._tmp)
            up.set()
            go_on.wait(60)
            super().add(item)

    monkeypatch.setattr(env, "_LIVE", _Live())

    async def cancel_as_open_ends() -> None:
        task = asyncio.create_task(session.starting(session.open))
        while not up.is_set():
            await asyncio.sleep(0.005)
        assert session._lock.locked()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # the cancel is handled: it found the lock held
        go_on.set()

    try:
        asyncio.run(cancel_as_open_ends())  # returns once the start's worker thread has ended
        assert not session.running
        assert folders and not os.path.exists(folders[0])  # closed: its folder removed
        assert env._kill_strays(folders[0], warn=False) == []  # no Chromium of it runs on
    finally:
        go_on.set()
        session.shutdown()
        with contextlib.suppress(OSError):
            tmp.rmdir()
    assert not tmp.exists()
