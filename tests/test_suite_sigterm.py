"""A test run stopped by SIGTERM (``timeout``'s, a CI cancel) tears its fixtures down, as a Ctrl-C's
does: it died at once, leaving what its session fixtures had started (a PostgreSQL server in a
session of its own, its ``/tmp/agentroute-pg-*`` folder).

A real pytest in a subprocess with this suite's plugin (tests/fixtures_sigterm.py), on a test whose session fixture makes a
folder and removes it at teardown; the test waits until the SIGTERM comes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INNER = textwrap.dedent("""
    import os, time
    import pytest

    @pytest.fixture(scope="session")
    def folder():
        path = os.environ["FOLDER"]
        os.mkdir(path)
        yield path
        os.rmdir(path)

    def test_waits(folder):
        open(folder + ".ready", "w").close()
        time.sleep(60)
""")


def test_a_sigterm_tears_the_session_fixtures_down(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    folder = tmp_path / "server"
    command = [sys.executable, "-m", "pytest", "-p", "tests.fixtures_sigterm", "-c", str(tmp_path / "pytest.ini"),
               "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q", str(tmp_path / "test_inner.py")]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "FOLDER": str(folder), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "server.ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, out  # pytest's "interrupted" (was: -15, killed by the signal)
    assert "SIGTERM" in out, out
    assert not folder.exists(), out  # torn down
