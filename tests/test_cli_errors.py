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


GRAPH_PY = 'from agentroute.graph import AgentGraph\n\ngraph = AgentGraph("one").add_role("executor", prompt="Answer.")\n'


def _run_with_checkpointer(tmp_path, checkpointer: str) -> subprocess.CompletedProcess[str]:
    import sys

    (tmp_path / "g.py").write_text(GRAPH_PY)
    (tmp_path / "in.jsonl").write_text('{"query": "hi", "query_id": "a"}\n')
    command = [sys.executable, "-m", "agentroute", "run", "g.py", "--input", "in.jsonl",
               "--memory", f"sqlite:///{tmp_path}/m.db", "--checkpointer", checkpointer]  # fmt: skip
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_an_unreachable_postgres_checkpointer_is_one_line_exit_2(tmp_path):
    import pytest

    pytest.importorskip("psycopg")
    pytest.importorskip("langgraph.checkpoint.postgres")
    run = _run_with_checkpointer(tmp_path, "postgresql://who:secret@127.0.0.1:1/nothing")
    output = run.stdout + run.stderr
    assert run.returncode == 2 and "Traceback" not in output, output  # was: psycopg's traceback, exit 1
    [line] = [x for x in output.splitlines() if x.startswith("error:")]
    assert "--checkpointer postgresql://who:***@127.0.0.1:1/nothing: cannot connect:" in line and "refused" in line, line
    assert "secret" not in output


def test_a_sqlite_checkpointer_that_cannot_be_opened_is_one_line_exit_2(tmp_path):
    import pytest

    pytest.importorskip("aiosqlite")
    pytest.importorskip("langgraph.checkpoint.sqlite")
    for path, reason in ((tmp_path / "no" / "such" / "dir.db", "unable to open database file"), (tmp_path / "notdb.db", "file is not a database")):
        if path.name == "notdb.db":
            path.write_text("this is no database, just text that is long enough to be read as a header\n" * 4)
        run = _run_with_checkpointer(tmp_path, f"sqlite:///{path}")
        output = run.stdout + run.stderr
        assert run.returncode == 2 and "Traceback" not in output, output  # was: sqlite3's traceback
        [line] = [x for x in output.splitlines() if x.startswith("error:")]
        assert line.endswith(f"cannot connect: {reason}"), line
