"""`agentroute run`'s summary counts the outcome each item was stored with, as its ``--out`` line does.

A task whose step the database refused is stored ``failed`` (so is its item, and its ``--out`` line
says so since f40d996), but the summary's "run here" column still counted it ``done``: 6 done and
0 failed run here, beside 5 done and 1 failed in the whole batch, for the same six queries.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess

from agentroute.memory import SQLMemory
from tests.test_batch_kill import _command, _setup
from tests.test_batch_out_stored_outcome_a240 import REFUSE_ID3
from tests.test_batch_server import StubOpenAIServer


def test_the_summary_counts_a_task_stored_failed_as_failed_run_here(tmp_path):
    url = f"sqlite:///{tmp_path}/memory.db"
    SQLMemory(url).close()
    with sqlite3.connect(tmp_path / "memory.db") as conn:  # the database refuses the step of query id3
        conn.execute(REFUSE_ID3)
    with StubOpenAIServer(delay_s=0.0) as server:
        paths = _setup(tmp_path, server.url, 6)
        env = {**os.environ, "COLUMNS": "200"}
        run = subprocess.run(_command(paths, url), capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    rows = dict(re.findall(r"│ (done|failed)\s+│\s+(\d+ │\s+\d+) │", run.stdout))
    counts = {status: [int(n) for n in cells.split("│")] for status, cells in rows.items()}
    # run here, whole batch (was: done 6 and 5, failed 0 and 1)
    assert counts == {"done": [5, 5], "failed": [1, 1]}, run.stdout
