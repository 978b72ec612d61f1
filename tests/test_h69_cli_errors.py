"""`agentroute run`'s error lines (helper-69, items 5 and 6): a memory that stops accepting writes
(a full disk: the process's file size limit, so SQLite fails with "disk I/O error") ends the run with
one line that names the cause once, and no traceback."""

from __future__ import annotations

import os
import resource
import signal
import subprocess

from agentroute.memory import SQLMemory
from tests.test_batch_kill import _command, _setup
from tests.test_batch_server import StubOpenAIServer

FILE_LIMIT = 150_000  # bytes: the migrated memory fits, the batch's first writes do not


def _disk_full() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def test_a_full_disk_names_its_cause_once(tmp_path):
    url = f"sqlite:///{tmp_path}/memory.db"
    SQLMemory(url).close()
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    with StubOpenAIServer(delay_s=0.0) as server:
        paths = _setup(tmp_path, server.url, 40)
        run = subprocess.run(_command(paths, url), capture_output=True, text=True, env=env, timeout=300, preexec_fn=_disk_full)
    output = run.stdout + run.stderr
    assert run.returncode == 1 and "Traceback" not in output, output
    [line] = [x for x in output.splitlines() if x.startswith("error:")]
    assert "cannot write to the memory" in line and line.endswith("resume it once the database accepts writes"), line
    assert line.count("disk I/O error") == 1, line  # was: "... accepts writes: disk I/O error" (twice)
