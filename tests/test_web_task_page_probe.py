"""The task page's status probe (``agentroute.web.task_page``) against a real HTTP server on
loopback: a page that is not there (404, 410) is a verdict; an error status that a browser may not
meet (a CDN's 403 to a script's User-Agent, 429, a 503) is not, so the run is never failed at once
for a page Chromium could play."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from agentroute.web.task_page import TaskPageProbe


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code = int(self.path.strip("/").split("/")[0] or 200)
        if code == 403 and "Python-urllib" not in self.headers.get("User-Agent", ""):
            code = 200  # a bot filter: a browser gets the page
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _answer(probe: TaskPageProbe, seconds: float = 5.0) -> str | None:
    deadline = time.monotonic() + seconds
    while probe.missing is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return probe.missing


@pytest.mark.parametrize("code", [404, 410])
def test_a_page_that_is_not_there_is_missing(server: str, code: int) -> None:
    assert _answer(TaskPageProbe(f"{server}/{code}/miniwob/click-test.html")) == f"HTTP {code}"


@pytest.mark.parametrize("code", [403, 429, 503])
def test_another_error_status_is_no_verdict(server: str, code: int) -> None:
    probe = TaskPageProbe(f"{server}/{code}/miniwob/click-test.html")
    assert _answer(probe, 1.5) is None


def test_a_loopback_page_is_asked_directly_not_through_an_environment_proxy(server: str, monkeypatch) -> None:
    """``http_proxy`` set, no ``no_proxy`` (as Chromium, which loads loopback pages directly): the
    probe asks the page itself, not the proxy (here a closed port that would answer nothing)."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert _answer(TaskPageProbe(f"{server}/404/miniwob/click-test.html")) == "HTTP 404"
