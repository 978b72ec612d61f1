"""A stop (Ctrl-C, SIGTERM) that kills the browser while an action runs, or while an episode's first
page loads in a fresh browser, is a stop: the episode is left for ``--resume`` (``interrupted``, or
not recorded), as the stop's cancel leaves it — not a ``failed`` task with its browser's error and a
failure audit that `memory show` and the stats count as the user's. A browser lost for another
reason (its chromedriver killed by someone else) stays a failure.

Which reaches the episode first, the stop handler's cancel or the browser command's failure, is a
race the handler usually wins (`run web` subprocesses below: 0 wrong records in 10 stops). When the
failure came first — the loop busy a moment as the signal came — Python 3.11's ``asyncio.wait_for``
(the action's ``off_loop``) dropped the cancel: the episode was recorded ``failed`` and the program
played on and exited 0.

The task pages come from a server of the test's own: each page asks it for ``/hold/reset`` as an
episode starts and for ``/hold/act`` when it is clicked; ``core.js`` is the page loading; the
request the test names is held until the test has killed the browser."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_held_pages import job_chromedriver, pages, recorded, run_web_held  # noqa: F401 (pages: a fixture)
from tests.fixtures_reply_server import LoopbackServer
from tests.fixtures_web import chromium, still_running  # noqa: F401 (fixtures)
from tests.test_web_agent import short_tmp  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not os.path.isdir("/proc"), reason="/proc (Linux)")]

#: The audit events of a browser's failure (at the first page, and in an action's check).
FAILURES = {"step_failed", "postcondition_failed"}


def _chromedriver_of(folder: str) -> int:
    """The pid of the chromedriver started for the browser folder ``folder`` (``TMPDIR=folder``)."""
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                program = os.path.basename(f.read().split(b"\0")[0])
        except OSError:
            continue
        if f"TMPDIR={folder}".encode() in environ and program == b"chromedriver":
            return int(name)
    raise AssertionError(f"no chromedriver runs for {folder}")


def _in_browser_call() -> bool:
    """Whether a thread of this process runs an episode's browser command (its action, its start)."""
    for frame in sys._current_frames().values():
        while frame is not None:
            code = frame.f_code
            if code.co_name in ("execute", "_start") and os.sep.join(("agentroute", "web")) in code.co_filename:
                return True
            frame = frame.f_back  # type: ignore[assignment]
    return False


def _kill_on_loop_when_held(server: LoopbackServer, loop: Any, session: Any, how: str) -> None:
    """Once the held request is held, on the event loop (busy meanwhile, as an on-loop screenshot or
    memory flush keeps it): kill the episode's chromedriver — ``ctrl-c``: SIGINT it and this program,
    as a terminal's Ctrl-C does (the run's handler runs once the loop is free); ``noted``: SIGINT it
    and note the stop as the handler does first, with no cancel (the one Python 3.11's ``wait_for``
    drops when the failure came first); ``other``: SIGTERM it, as someone else's `kill` does — then
    wait until the browser's command has failed, so that its failure is queued first."""
    from agentroute.web.env import note_stop_signal

    def kill() -> None:
        folder = (session._env.instance if session._env is not None else session._starting)._tmp
        os.kill(_chromedriver_of(folder), signal.SIGTERM if how == "other" else signal.SIGINT)
        if how == "ctrl-c":
            os.kill(os.getpid(), signal.SIGINT)
        elif how == "noted":
            note_stop_signal()
        deadline = time.monotonic() + 30
        while _in_browser_call() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # its thread ends: the failure is on its way to the episode
        server.release.set()  # type: ignore[attr-defined]

    deadline = time.monotonic() + 120
    while not server.holding.wait(0.1):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            return
    loop.call_soon_threadsafe(kill)


def _episode_killed(
    server: LoopbackServer, tmp_path: Path, hold: tuple[str, int], how: str
) -> tuple[int | str, list[Any], tuple[dict[str, int], list[str], list[str]]]:
    """One episode of ``click-test`` by a fresh :class:`WebAgent` under `run web`'s stop handler,
    its browser killed at ``hold`` (:func:`_kill_on_loop_when_held`): the exit code (``cancelled``
    when the episode ended cancelled with no signal), its result (none when a stop ended it) and
    what the memory recorded."""
    from rich.console import Console

    from agentroute.cli.web_cmd import _stoppable
    from agentroute.memory import open_memory
    from agentroute.web.agent import WebAgent

    server.hold = hold  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{server.server_address[1]}/miniwob/"
    memory = open_memory(f"sqlite:///{tmp_path / 'web.db'}")
    results: list[Any] = []
    helper: list[threading.Thread] = []
    ended: int | str = "cancelled"
    try:
        agent = WebAgent(router="always-skill", memory=memory, miniwob_url=url)
        session = agent.session("click-test")

        async def play() -> int:
            loop = asyncio.get_running_loop()
            helper.append(threading.Thread(target=_kill_on_loop_when_held, args=(server, loop, session, how)))
            helper[0].start()
            try:
                results.append(await agent.run_episode("click-test", 0))
                return 0
            finally:
                await agent.aclose()

        with contextlib.suppress(asyncio.CancelledError):
            ended = asyncio.run(_stoppable(play(), Console(file=io.StringIO())))
    finally:
        server.release.set()  # type: ignore[attr-defined]
        for thread in helper:
            thread.join(60)
        memory.close()
    return ended, results, recorded(tmp_path)


HOLDS = pytest.mark.parametrize(
    "hold", [("load", 1), ("act", 1)], ids=["first-page-of-a-fresh-browser", "mid-action"]
)


@HOLDS
def test_a_browser_the_stop_killed_ends_the_episode_as_the_stops_cancel_does(
    chromium, pages, short_tmp, tmp_path, monkeypatch, hold  # noqa: F811
) -> None:
    """The stop noted, its cancel dropped: before the fix, the episode was recorded ``failed``."""
    from agentroute.web import env

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    monkeypatch.setattr(env, "_SIGNALLED", False)  # set by the stop: this test's own
    ended, results, (tasks, audits, steps) = _episode_killed(pages, tmp_path, hold, "noted")
    assert ended == "cancelled" and results == [], results
    assert not FAILURES & set(audits), audits
    if hold[0] == "load":  # as a cancel of the start: nothing recorded, --resume plays it
        assert tasks == {}, tasks
    else:  # as a cancel mid-action: interrupted, the step cancelled
        assert tasks == {"interrupted": 1}, tasks
        assert steps == ["failed: cancelled"], steps
    assert list(short_tmp.iterdir()) == []


def test_a_ctrl_c_that_killed_the_browser_mid_action_is_a_stop_when_the_loop_hears_it_late(
    chromium, pages, short_tmp, tmp_path, monkeypatch  # noqa: F811
) -> None:
    """A real SIGINT and the run's own handler: the check's ``wait_for`` dropped its cancel, the
    episode was recorded ``failed`` and the run ended 0 (5 runs in 5 before the fix)."""
    from agentroute.web import env

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    monkeypatch.setattr(env, "_SIGNALLED", False)
    ended, results, (tasks, audits, steps) = _episode_killed(pages, tmp_path, ("act", 1), "ctrl-c")
    assert ended == 130 and results == [], results
    assert not FAILURES & set(audits), audits
    assert tasks == {"interrupted": 1} and steps == ["failed: cancelled"], (tasks, steps)
    assert list(short_tmp.iterdir()) == []


@HOLDS
def test_a_browser_killed_by_someone_else_stays_a_failed_episode_with_its_reason(
    chromium, pages, short_tmp, tmp_path, monkeypatch, hold  # noqa: F811
) -> None:
    """`kill <chromedriver>` (SIGTERM, as a stop's, but the program got none): a lost browser."""
    from agentroute.web import env

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    monkeypatch.setattr(env, "_SIGNALLED", False)
    ended, results, (tasks, audits, _) = _episode_killed(pages, tmp_path, hold, "other")
    assert ended == 0 and [r.status for r in results] == ["failed"], results
    assert "click-test" in (results[0].error or ""), results[0].error  # the reason, in one line
    assert tasks == {"failed": 1}, tasks
    assert FAILURES & set(audits), audits
    assert list(short_tmp.iterdir()) == []


RUN = ["--tasks", "click-test", "--episodes", "2", "--concurrency", "1", "--router", "always-skill"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_run_web_stopped_mid_action_leaves_the_episode_interrupted_for_resume(
    chromium, pages, short_tmp, tmp_path, signum, code  # noqa: F811
) -> None:
    pages.hold = ("act", 1)  # type: ignore[attr-defined]
    proc, out, left = run_web_held(short_tmp, tmp_path, pages, RUN, lambda p: os.killpg(p.pid, signum))
    assert proc.returncode == code, out
    assert f"stopped by {signal.Signals(signum).name}" in out and "Traceback" not in out, out
    tasks, audits, steps = recorded(tmp_path)
    assert tasks == {"interrupted": 1} and steps == ["failed: cancelled"], (tasks, steps)
    assert not FAILURES & set(audits), audits
    assert left == [] and list(short_tmp.iterdir()) == []


def test_run_web_whose_chromedriver_someone_killed_mid_action_fails_that_episode_and_plays_on(
    chromium, pages, short_tmp, tmp_path  # noqa: F811
) -> None:
    pages.hold = ("act", 1)  # type: ignore[attr-defined]
    kill = lambda p: os.kill(job_chromedriver(p.pid), signal.SIGTERM)  # noqa: E731
    proc, out, left = run_web_held(short_tmp, tmp_path, pages, RUN, kill)
    assert proc.returncode == 1, out  # an episode failed
    assert "click-test seed 0: click(" in " ".join(out.split()), out
    tasks, audits, _ = recorded(tmp_path)
    assert tasks == {"failed": 1, "done": 1}, tasks
    assert "postcondition_failed" in audits, audits
    assert left == [] and list(short_tmp.iterdir()) == []
