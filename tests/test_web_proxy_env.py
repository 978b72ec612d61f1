"""`agentroute run web` on a machine whose environment names an HTTP proxy (``http_proxy``,
``HTTPS_PROXY``, as corporate machines set them) and no ``no_proxy`` for loopback.

- The calls to the local chromedriver must not go through the proxy (was: Selenium sent them there;
  the run failed before its first page, the proxy's HTML page in its error line).
- The proxy sees no request but the task pages' (was: Chromium's own, despite
  ``--disable-background-networking --disable-component-update``: its secure-time query to
  clients2.google.com, an on-demand component check to update.googleapis.com and its Google
  account listing to accounts.google.com, retried with a backoff, all within its first second).
"""

from __future__ import annotations

import functools
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler

import pytest

from tests.fixtures_reply_server import LoopbackServer
from tests.test_web_cli_options import CLI

PROXY_PAGE = b"<html><body>Access denied by the proxy</body></html>"
#: The MiniWoB++ server that the proxy reaches (``.test``: a name no DNS answers, RFC 2606).
TASK_HOST = "miniwob.test"


class _Proxy(SimpleHTTPRequestHandler):
    """A proxy that reaches one MiniWoB++ server, :data:`TASK_HOST` (it serves the ``miniwob``
    package's pages for it), and refuses everything else, as one that cannot reach this machine's
    loopback does. The host of every request it is asked is kept in ``server.hosts``."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        parts = urllib.parse.urlsplit(self.path)
        self.server.hosts.append(parts.hostname or self.path)  # type: ignore[attr-defined]
        if parts.hostname != TASK_HOST:
            return self._refuse()
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        return super().do_GET()

    def _note_and_refuse(self) -> None:  # CONNECT host:443, or a POST/DELETE of an absolute URL
        host = (
            urllib.parse.urlsplit(self.path).hostname if "://" in self.path else self.path.rpartition(":")[0]
        )
        self.server.hosts.append(host or self.path)  # type: ignore[attr-defined]
        self._refuse()

    do_POST = do_DELETE = do_CONNECT = do_HEAD = _note_and_refuse  # noqa: N815 - the stdlib's names

    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PROXY_PAGE)))
        self.end_headers()
        self.wfile.write(PROXY_PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[LoopbackServer]:
    html = pytest.importorskip("miniwob.selenium_instance").HTML_DIR
    with LoopbackServer(functools.partial(_Proxy, directory=str(html))) as server:  # type: ignore[arg-type]
        server.hosts = []  # type: ignore[attr-defined]
        yield server


def _run_web_behind(proxy: LoopbackServer, tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    address = f"http://127.0.0.1:{proxy.server_address[1]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")
    }
    env.update({"http_proxy": address, "HTTP_PROXY": address, "https_proxy": address, "HTTPS_PROXY": address,
                "OMP_NUM_THREADS": "1", "COLUMNS": "200"})  # fmt: skip
    return subprocess.run(
        [*CLI, "--tasks", "click-test", "--episodes", "1", "--router", "always-skill",
         "--memory", f"sqlite:///{tmp_path / 'web.db'}", "--out", str(tmp_path / "out.jsonl"), *args],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip


@pytest.mark.browser
def test_run_web_plays_with_a_proxy_in_the_environment_and_shows_it_no_request(
    chromium, tmp_path, proxy
) -> None:
    done = _run_web_behind(proxy, tmp_path)  # the pages the miniwob package ships: file:// URLs
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Access denied" not in done.stdout + done.stderr
    assert '"success": true' in (tmp_path / "out.jsonl").read_text()
    # chromedriver's calls (its shutdown too) and the page went direct; Chromium asked nothing of its own
    assert proxy.hosts == []  # type: ignore[attr-defined]


@pytest.mark.browser
def test_a_proxy_that_reaches_the_task_pages_sees_their_host_only(chromium, tmp_path, proxy) -> None:
    done = _run_web_behind(proxy, tmp_path, "--miniwob-url", f"http://{TASK_HOST}/miniwob/")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert '"success": true' in (tmp_path / "out.jsonl").read_text()
    assert TASK_HOST in proxy.hosts  # type: ignore[attr-defined]  # the page came through the proxy
    assert set(proxy.hosts) == {TASK_HOST}  # type: ignore[attr-defined]
