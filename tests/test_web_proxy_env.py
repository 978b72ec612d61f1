"""`agentroute run web` on a machine whose environment names an HTTP proxy (``http_proxy``,
``HTTPS_PROXY``, as corporate machines set them) and no ``no_proxy`` for loopback: the calls to the
local chromedriver must not go through the proxy (was: Selenium sent them there; the run failed
before its first page, the proxy's HTML page in its error line)."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.test_web_cli_options import CLI

PROXY_PAGE = b"<html><body>Access denied by the proxy</body></html>"


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A proxy that refuses everything, as one that cannot reach this machine's loopback does."""

    def _refuse(self) -> None:
        self.server.seen += 1  # type: ignore[attr-defined]
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(403)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PROXY_PAGE)))
        self.end_headers()
        self.wfile.write(PROXY_PAGE)

    do_GET = do_POST = do_DELETE = do_CONNECT = _refuse  # noqa: N815 - the stdlib's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    server.seen, server.paths = 0, []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.browser
def test_run_web_plays_with_a_proxy_in_the_environment(chromium, tmp_path, proxy) -> None:
    address = f"http://127.0.0.1:{proxy.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")}
    env.update({"http_proxy": address, "HTTP_PROXY": address, "https_proxy": address, "HTTPS_PROXY": address,
                "OMP_NUM_THREADS": "1", "COLUMNS": "200"})  # fmt: skip
    done = subprocess.run(
        [*CLI, "--tasks", "click-test", "--episodes", "1", "--router", "always-skill",
         "--memory", f"sqlite:///{tmp_path / 'web.db'}", "--out", str(tmp_path / "out.jsonl")],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Access denied" not in done.stdout + done.stderr
    assert '"success": true' in (tmp_path / "out.jsonl").read_text()
    # chromedriver's calls (its shutdown too), the page and its probe went direct; Chromium's own
    # background requests (its updater's) may use the proxy
    assert [p for p in proxy.paths if "127.0.0.1" in p or "localhost" in p] == []  # type: ignore[attr-defined]
