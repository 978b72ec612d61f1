"""A stop (Ctrl-C, SIGTERM) that lands while a kept browser resets for its next episode: the reset
fails, and the episode's start took the failure for a lost browser: it warned "the browser of
'click-test' was lost (…); starting a fresh one" and started a new chromedriver and Chromium, which
the cancel then killed. Now a browser stopped by the signal is not replaced: no warning, no new
browser, the run exits 130 / 143 as before. A browser lost for another reason (its chromedriver
killed by someone else, even with SIGTERM) is still replaced once, and the run plays on.

The task pages come from a server of the test's own whose ``click-test`` page asks it for
``/hold`` as each episode starts (inside MiniWoB's reset): the second episode's reset, the kept
browser's, waits there until the test has sent its signal. Chromedriver is a wrapper that notes
each start, so a browser started after the signal is counted, not guessed from a process list."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from tests.fixtures_reply_server import LoopbackServer
from tests.fixtures_web import chromium, still_running  # noqa: F401 (fixtures)
from tests.test_web_agent import short_tmp  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not os.path.isdir("/proc"), reason="/proc (Linux)")]

#: Each episode's reset asks the server for /hold (a synchronous request: MiniWoB's reset waits).
HOLD = b"""<script>
(function () {
  var generate = genProblem;
  genProblem = function () {
    var request = new XMLHttpRequest();
    request.open('GET', '/hold', false);
    try { request.send(); } catch (e) {}
    generate();
  };
})();
</script>
</body>"""

LOST = "was lost"


class _Pages(SimpleHTTPRequestHandler):
    """The ``miniwob`` package's pages, ``click-test.html`` with :data:`HOLD`; ``/hold`` counts
    the resets in ``server.resets`` and holds the second one until ``server.release``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        if self.path == "/hold":
            with server.lock:  # type: ignore[attr-defined]
                server.resets += 1  # type: ignore[attr-defined]
                held = server.resets == 2  # type: ignore[attr-defined]
            if held:
                server.holding.set()  # type: ignore[attr-defined]
                server.release.wait(60)  # type: ignore[attr-defined]
            self.send_response(204)
            self.end_headers()
            return
        if self.path.endswith("/click-test.html"):
            page = (Path(self.directory) / "miniwob" / "click-test.html").read_bytes()
            body = page.replace(b"</body>", HOLD)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[LoopbackServer]:
    html = pytest.importorskip("miniwob.selenium_instance").HTML_DIR
    with LoopbackServer(functools.partial(_Pages, directory=str(html))) as server:  # type: ignore[arg-type]
        server.lock, server.resets = threading.Lock(), 0  # type: ignore[attr-defined]
        server.holding, server.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
        try:
            yield server
        finally:
            server.release.set()  # type: ignore[attr-defined]


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
    """`agentroute run web` on the held pages, TMPDIR=``tmp``, memory ``tmp_path/web.db``; once the
    kept browser's reset is held, ``stop(proc)`` runs, then the hold ends. The process, its output,
    the chromedrivers started after ``stop`` and the processes of its job still running."""
    wrapper, starts = _noting_chromedriver(tmp_path)
    url = f"http://127.0.0.1:{server.server_address[1]}/miniwob/"
    command = [sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--episodes", "3", "--concurrency", "1",
               "--router", "always-skill", "--miniwob-url", url, "--memory", f"sqlite:///{tmp_path / 'web.db'}"]  # fmt: skip
    proc = subprocess.Popen(
        command, env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "MINIWOB_CHROMEDRIVER": str(wrapper)},
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not server.holding.wait(0.1):  # type: ignore[attr-defined]
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=30)[0]
        sent = time.time()
        stop(proc)
        time.sleep(1.0)  # the stop reaches the reset's browser command, the run reacts
        server.release.set()  # type: ignore[attr-defined]
        out, _ = proc.communicate(timeout=120)
        left = still_running(proc.pid, within_s=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        still_running(proc.pid, within_s=0)
    return proc, out, _starts_after(starts, sent), left


def _statuses(tmp_path: Path) -> dict[str, int]:
    """How many tasks of each status the run's memory holds."""
    from agentroute.memory import open_memory

    memory = open_memory(f"sqlite:///{tmp_path / 'web.db'}")
    try:
        return memory.stats()["tasks"]
    finally:
        memory.close()


def _chromedriver_of(session: int) -> int:
    """The pid of the chromedriver running in the process session ``session``."""
    found = subprocess.run(["pgrep", "-s", str(session), "-x", "chromedriver"], capture_output=True, text=True)
    pids = [int(pid) for pid in found.stdout.split()]
    assert len(pids) == 1, pids
    return pids[0]


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
    assert _statuses(tmp_path) == {"done": 1}  # the stopped episode is left to --resume, not `failed`


def test_a_chromedriver_killed_by_someone_else_mid_reset_is_replaced_once_and_the_run_plays_on(
    chromium, pages, short_tmp, tmp_path  # noqa: F811
) -> None:
    """`kill <chromedriver>` (SIGTERM, as a stop signal's, but the program got none): a lost browser."""

    def kill_chromedriver(proc: subprocess.Popen[str]) -> None:
        os.kill(_chromedriver_of(proc.pid), signal.SIGTERM)

    proc, out, started, left = _run_web_held(short_tmp, tmp_path, pages, kill_chromedriver)
    assert proc.returncode == 0, out
    assert " ".join(out.split()).count("the browser of 'click-test' was lost") == 1, out
    assert started == 1, out  # the fresh browser, which played the episode and the next
    assert left == [] and list(short_tmp.iterdir()) == []
    assert _statuses(tmp_path) == {"done": 3}
