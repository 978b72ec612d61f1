"""MiniWoB task pages served by a test's own loopback server that can hold one request of an episode
— its reset, a click, or the page loading — until the test has done something to the browser (sent
a signal, killed its chromedriver), and `agentroute run web` run against them in a subprocess.

Each page asks ``/hold/reset`` as an episode starts and ``/hold/act`` when it is clicked (synchronous
requests: the page waits); ``core.js`` is the page loading (kind ``load``). ``pages.hold = (kind, n)``
names the request held: the ``n``-th of that kind.
"""

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
from tests.fixtures_web import still_running

#: Each reset asks for /hold/reset, each click for /hold/act (synchronous requests: the page waits).
HOLD = b"""<script>
(function () {
  function ask(what) {
    var request = new XMLHttpRequest();
    request.open('GET', '/hold/' + what, false);
    try { request.send(); } catch (e) {}
  }
  var generate = genProblem;
  genProblem = function () { ask('reset'); generate(); };
  document.addEventListener('click', function () { ask('act'); }, true);
})();
</script>
</body>"""

class HeldPages(SimpleHTTPRequestHandler):
    """The ``miniwob`` package's pages with :data:`HOLD`; ``/hold/KIND`` (and ``core.js``, kind
    ``load``: a task page loading) counts its requests and holds the one ``server.hold`` names
    (``(kind, n)``) until ``server.release``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        if self.path.startswith("/hold/") or self.path.endswith("/core/core.js"):
            kind = self.path.rsplit("/", 1)[1].replace("core.js", "load")
            with server.lock:  # type: ignore[attr-defined]
                server.seen[kind] = n = server.seen.get(kind, 0) + 1  # type: ignore[attr-defined]
            if (kind, n) == server.hold:  # type: ignore[attr-defined]
                server.holding.set()  # type: ignore[attr-defined]
                server.release.wait(60)  # type: ignore[attr-defined]
            if kind != "load":
                self.send_response(204)
                self.end_headers()
                return
        if self.path.endswith(".html") and "/miniwob/" in self.path:
            page = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
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
    """The held pages' server (``hold`` unset: nothing held until the test names a request)."""
    html = pytest.importorskip("miniwob.selenium_instance").HTML_DIR
    with LoopbackServer(functools.partial(HeldPages, directory=str(html))) as server:  # type: ignore[arg-type]
        server.lock, server.seen, server.hold = threading.Lock(), {}, None  # type: ignore[attr-defined]
        server.holding, server.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
        try:
            yield server
        finally:
            server.release.set()  # type: ignore[attr-defined]


def run_web_held(
    tmp: Path,
    tmp_path: Path,
    server: LoopbackServer,
    options: list[str],
    stop: Callable[[subprocess.Popen[str]], None],
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], str, list[int]]:
    """`agentroute run web OPTIONS` on the held pages, TMPDIR=``tmp``, memory ``tmp_path/web.db``;
    once the held request is held, ``stop(proc)`` runs, then the hold ends; ``env``: more of its
    environment. The process, its output and the processes of its job still running."""
    url = f"http://127.0.0.1:{server.server_address[1]}/miniwob/"
    command = [sys.executable, "-m", "agentroute", "run", "web", *options, "--miniwob-url", url,
               "--memory", f"sqlite:///{tmp_path / 'web.db'}"]  # fmt: skip
    proc = subprocess.Popen(
        command, env={**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", **(env or {})},
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not server.holding.wait(0.1):  # type: ignore[attr-defined]
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=30)[0]
        stop(proc)
        time.sleep(1.0)  # the stop reaches the browser's command, the run reacts
        server.release.set()  # type: ignore[attr-defined]
        out, _ = proc.communicate(timeout=120)
        left = still_running(proc.pid, within_s=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        still_running(proc.pid, within_s=0)
    return proc, out, left


def recorded(tmp_path: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """The run's memory: tasks by status, the kinds of its audit events, the statuses of its steps."""
    from agentroute.memory import open_memory

    memory = open_memory(f"sqlite:///{tmp_path / 'web.db'}")
    try:
        steps = [f"{s.status}: {s.error}" if s.error else s.status for t in memory.trajectories() for s in t.steps]
        return memory.stats()["tasks"], [e.kind for e in memory.audit_events()], steps
    finally:
        memory.close()


def job_chromedriver(session: int) -> int:
    """The pid of the chromedriver running in the process session ``session``."""
    found = subprocess.run(["pgrep", "-s", str(session), "-x", "chromedriver"], capture_output=True, text=True)
    pids = [int(pid) for pid in found.stdout.split()]
    assert len(pids) == 1, pids
    return pids[0]
