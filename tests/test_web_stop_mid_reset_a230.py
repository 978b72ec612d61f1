"""A stop (Ctrl-C, SIGTERM) that lands while a kept browser resets for its next episode: the reset
fails, and the episode's start took the failure for a lost browser: it warned "the browser of
'click-test' was lost (…); starting a fresh one" and started a new chromedriver and Chromium, which
the cancel then killed. Now a browser stopped by the signal is not replaced: no warning, no new
browser, the run exits 130 / 143 as before. A browser lost for another reason (its chromedriver
killed by someone else, even with SIGTERM) is still replaced once, and the run plays on.

The task pages come from a server of the test's own (:mod:`tests.fixtures_held_pages`) that the
page asks as each episode starts (inside MiniWoB's reset): the second episode's reset, the kept
browser's, waits there until the test has sent its signal. Chromedriver is a wrapper that notes
each start, so a browser started after the signal is counted, not guessed from a process list."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures_held_pages import job_chromedriver, pages, recorded, run_web_held  # noqa: F401 (pages: a fixture)
from tests.fixtures_reply_server import LoopbackServer
from tests.fixtures_web import chromium, still_running  # noqa: F401 (fixtures)
from tests.test_web_agent import short_tmp  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not os.path.isdir("/proc"), reason="/proc (Linux)")]

LOST = "was lost"


def _noting_chromedriver(folder: Path) -> tuple[Path, Path]:
    """A chromedriver that appends its start time (``time.time()``) and pid to a file, then runs
    the real one; the wrapper's path and the file's."""
    from agentroute.web.env import find_chromium

    _, driver = find_chromium()
    starts = folder / "starts"
    wrapper = folder / "chromedriver"
    wrapper.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $$" >> {starts}\nexec {driver} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, starts


def _starts_after(starts: Path, moment: float) -> int:
    lines = starts.read_text().split() if starts.exists() else []
    return sum(float(stamp) > moment for stamp in lines[::2])


def _run_web_held(
    tmp: Path, tmp_path: Path, server: LoopbackServer, stop: Callable[[subprocess.Popen[str]], None]
) -> tuple[subprocess.Popen[str], str, int, list[int]]:
    """Three episodes of ``click-test`` by `run web` (:func:`~tests.fixtures_held_pages.run_web_held`),
    the kept browser's reset (the second) held until ``stop(proc)`` has run, chromedriver a wrapper
    that notes its starts. The process, its output, the chromedrivers started after ``stop`` and
    the processes of its job still running."""
    wrapper, starts = _noting_chromedriver(tmp_path)
    server.hold = ("reset", 2)  # type: ignore[attr-defined]
    sent: list[float] = []

    def noted(proc: subprocess.Popen[str]) -> None:
        sent.append(time.time())
        stop(proc)

    proc, out, left = run_web_held(tmp, tmp_path, server, RUN, noted, env={"MINIWOB_CHROMEDRIVER": str(wrapper)})
    return proc, out, _starts_after(starts, sent[0]), left


RUN = ["--tasks", "click-test", "--episodes", "3", "--concurrency", "1", "--router", "always-skill"]


@pytest.mark.parametrize(
    ("signum", "group", "code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, True, 143), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c", "sigterm-job", "sigterm-alone"],
)
def test_a_stop_during_a_kept_browsers_reset_starts_no_browser_and_warns_of_no_loss(
    chromium, pages, short_tmp, tmp_path, signum, group, code  # noqa: F811
) -> None:
    def stop(proc: subprocess.Popen[str]) -> None:
        (os.killpg if group else os.kill)(proc.pid, signum)

    proc, out, started, left = _run_web_held(short_tmp, tmp_path, pages, stop)
    assert proc.returncode == code, out
    assert LOST not in out, out
    assert started == 0, f"{started} chromedriver(s) started after the {signal.Signals(signum).name}\n{out}"
    assert f"stopped by {signal.Signals(signum).name}" in out, out
    assert "Traceback" not in out, out
    assert left == [] and list(short_tmp.iterdir()) == []
    assert recorded(tmp_path)[0] == {"done": 1}  # the stopped episode is left to --resume, not `failed`


def test_a_chromedriver_killed_by_someone_else_mid_reset_is_replaced_once_and_the_run_plays_on(
    chromium, pages, short_tmp, tmp_path  # noqa: F811
) -> None:
    """`kill <chromedriver>` (SIGTERM, as a stop signal's, but the program got none): a lost browser."""

    def kill_chromedriver(proc: subprocess.Popen[str]) -> None:
        os.kill(job_chromedriver(proc.pid), signal.SIGTERM)

    proc, out, started, left = _run_web_held(short_tmp, tmp_path, pages, kill_chromedriver)
    assert proc.returncode == 0, out
    assert " ".join(out.split()).count("the browser of 'click-test' was lost") == 1, out
    assert started == 1, out  # the fresh browser, which played the episode and the next
    assert left == [] and list(short_tmp.iterdir()) == []
    assert recorded(tmp_path)[0] == {"done": 3}
