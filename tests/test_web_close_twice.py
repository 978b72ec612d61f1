"""A browser closed by two threads at once — an abandon's closing thread and the failed command or
start it ended, as after Ctrl-C in `run web` — is closed once, and the second close waits for the
first. Before, both passed the folder check: one removed the folder and cleared its name, the other
then called ``_remove(None)`` and printed a ``TypeError`` traceback at exit (a CI run at 297d6e7).

And a browser whose chromedriver a Ctrl-C reached (the terminal signals the whole job) is swept
without the "left by a lost chromedriver" warning: that is what a Ctrl-C does, not a lost driver."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import pytest

from tests.fixtures_web import chromium  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not os.path.isdir("/proc"), reason="/proc (Linux)")]


def _browser(monkeypatch, tmp: Path):
    from agentroute.web.env import MiniWoBSession

    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # short: Chromium's socket path must fit
    session = MiniWoBSession("click-test").open()
    return session, session._env.instance


def test_two_threads_closing_one_browser_close_it_once(chromium, monkeypatch, caplog) -> None:  # noqa: F811
    from agentroute.web import env

    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    session, instance = _browser(monkeypatch, tmp)
    folder = instance._tmp
    failures: list[BaseException] = []
    entered = threading.Barrier(2)
    sweeps: list[str] = []
    sweep = env._kill_strays

    def slow_sweep(where: str, **kwargs):  # the window between the folder check and its removal,
        sweeps.append(where)  # as wide as a loaded machine's /proc scan makes it
        threading.Event().wait(0.3)
        return sweep(where, **kwargs)

    monkeypatch.setattr(env, "_kill_strays", slow_sweep)

    def close() -> None:
        entered.wait()
        try:
            instance.close()
        except BaseException as exc:  # noqa: BLE001 - what the thread would print at exit
            failures.append(exc)

    threads = [threading.Thread(target=close) for _ in range(2)]
    try:
        with caplog.at_level(logging.WARNING, logger="agentroute"):
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
        assert failures == []
        assert sweeps == [folder]  # one close did the work
        assert not os.path.exists(folder) and instance._tmp is None
        assert "lost chromedriver" not in caplog.text
    finally:
        session.shutdown()
        os.rmdir(tmp)


def test_a_ctrl_c_that_reached_chromedriver_is_no_lost_chromedriver(chromium, monkeypatch, caplog) -> None:  # noqa: F811
    import signal

    from agentroute.web import env

    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    session, instance = _browser(monkeypatch, tmp)
    driver = instance.driver.service.process
    try:
        monkeypatch.setattr(env, "_SIGNALLED", False)
        env.note_stop_signal()
        os.kill(driver.pid, signal.SIGINT)  # what the terminal's Ctrl-C sends the whole job
        driver.wait(30)
        with caplog.at_level(logging.WARNING, logger="agentroute"):
            session.shutdown()
        assert "lost chromedriver" not in caplog.text
        assert not any(p.name.startswith("agentroute-") for p in tmp.iterdir())
    finally:
        session.shutdown()
        os.rmdir(tmp)
