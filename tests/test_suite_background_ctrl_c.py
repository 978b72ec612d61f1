"""A test run started as a background job of a script (``pytest ... &``: SIGINT ignored, and
inherited ignored across ``exec``) starts its subprocesses with Ctrl-C's default action, as a run in
a terminal does: the tests that send an ``agentroute`` a Ctrl-C timed out there (the command ignored
it and ran on), at every commit.

A real pytest with this suite's plugin (tests/fixtures_sigterm.py), started with SIGINT ignored, on
a test that asks a fresh Python how it handles SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INNER = textwrap.dedent("""
    import subprocess, sys

    def test_a_child_handles_ctrl_c():
        code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
        assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "True\\n"
""")


def test_a_run_in_the_background_starts_children_that_a_ctrl_c_stops(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "-p", "tests.fixtures_sigterm", "-c", str(tmp_path / "pytest.ini"),
               "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q", str(tmp_path / "test_inner.py")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
