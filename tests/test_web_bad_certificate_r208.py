"""``run web --miniwob-url https://…`` on a server whose certificate this machine does not trust:
Chromium shows its warning page instead of the task, and the run's one line named the wrong cause
("is run web --miniwob-url the base URL of MiniWoB++ task pages?"). It now names the certificate
and what to do. The browser, not Python, decides whether the page loads (it may trust a
certificate Python's store lacks), so the run still gives it the 10 s of the start-screen wait."""

from __future__ import annotations

import functools
import os
import shutil
import ssl
import subprocess
import sys
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from tests.fixtures_reply_server import LoopbackServer
from tests.fixtures_web import chromium  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser


class _Pages(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass


def test_an_untrusted_certificate_is_named_in_the_one_line(chromium, tmp_path: Path) -> None:  # noqa: F811
    if shutil.which("openssl") is None:
        pytest.skip("openssl makes the test's certificate")
    html = pytest.importorskip("miniwob.selenium_instance").HTML_DIR
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with LoopbackServer(functools.partial(_Pages, directory=str(html))) as server:  # type: ignore[arg-type]
        server.socket = context.wrap_socket(server.socket, server_side=True)
        url = f"https://127.0.0.1:{server.server_address[1]}/miniwob/"
        proc = subprocess.run(
            [sys.executable, "-m", "agentroute", "run", "web", "--miniwob-url", url, "--tasks", "click-test",
             "--episodes", "1", "--router", "always-skill", "--memory", "sqlite:///web.db", "--out", "out.jsonl"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: the page {url}click-test.html showed no MiniWoB task"), lines
    assert "certificate" in lines[0] and "base URL of MiniWoB++ task pages" not in lines[0], lines
    assert "No episode was played" in lines[0] and not (tmp_path / "out.jsonl").exists()
