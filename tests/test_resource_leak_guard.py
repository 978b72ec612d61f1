"""The suite's leak guard (tests/fixtures_leaks.py): a test module that leaves an unclosed socket behind as
garbage is told so at its own end, naming the module, and the garbage is collected there. Before,
the socket's ResourceWarning came wherever the garbage collector next ran: a later module's test
(tests/test_embed_export.py failed so), with nothing naming the module that leaked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LEAKY = '''
import socket

def test_leaves_a_socket_in_a_cycle():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    cycle = [sock]
    cycle.append(cycle)  # freed only by the garbage collector, whenever it runs
'''

CLEAN = '''
import socket

def test_closes_its_socket():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
'''


def test_a_module_that_leaks_a_socket_fails_at_its_own_end_and_a_clean_one_passes(tmp_path: Path) -> None:
    (tmp_path / "test_a_leaky.py").write_text(LEAKY)
    (tmp_path / "test_b_clean.py").write_text(CLEAN)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.fixtures_leaks", "-p", "no:cacheprovider", "-q", "-rE",
         "-W", "error::tests.fixtures_leaks.LeakedResource", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # this plugin alone: a run of 0.3 s, not 3
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "2 passed" in out and "1 error" in out, out  # the leaky module's test passed; its end is the error
    assert "ERROR at teardown of test_leaves_a_socket_in_a_cycle" in out, out
    assert "test_a_leaky.py left 1 unclosed: unclosed <socket.socket" in out, out
