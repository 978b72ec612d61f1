"""`agentroute run` whose memory stops accepting writes mid-batch (a full disk: the process's file
size limit, so SQLite's writes fail with "disk I/O error"): the run ends with one clear error, not a
traceback, and once the disk has room a `--resume` finishes every query exactly once."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest

from agentroute.memory import SQLMemory
from tests.test_batch_kill import CONCURRENCY, _check_exactly_once, _command, _memory_state, _setup
from tests.test_batch_server import StubOpenAIServer

FILE_LIMIT = 400_000  # bytes: the migrated memory (about 100 KB) and a few tasks fit, not 60


def _disk_full() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def test_a_full_disk_ends_the_run_with_a_clear_error_and_resume_finishes_it(tmp_path):
    n = 60
    url = f"sqlite:///{tmp_path}/memory.db"
    SQLMemory(url).close()  # the schema is in place: the writes of the run itself hit the limit
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    with StubOpenAIServer(delay_s=0.0) as server:
        paths = _setup(tmp_path, server.url, n)
        full = subprocess.run(_command(paths, url), capture_output=True, text=True, env=env, timeout=300,
                              preexec_fn=_disk_full)  # fmt: skip
        output = full.stdout + full.stderr
        assert full.returncode == 1, output
        assert "Traceback" not in output, output
        assert "error: batch " in output and "cannot write to the memory" in output and "disk I/O error" in output
        state = _memory_state(url)
        assert sum(i["status"] == "done" for i in state["items"]) < n  # it did stop part way

        resumed = subprocess.run(_command(paths, url), capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_exactly_once(_memory_state(url), paths["out.jsonl"], n)


def test_a_read_only_memory_ends_the_run_before_any_call_with_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path}/memory.db"
    SQLMemory(url).close()
    db = tmp_path / "memory.db"
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode:
        pytest.skip("cannot make the file immutable here (chattr +i needs root and a supporting file system)")
    try:
        with StubOpenAIServer(delay_s=0.0) as server:
            paths = _setup(tmp_path, server.url, 5)
            run = subprocess.run(_command(paths, url), capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "COLUMNS": "200"})  # fmt: skip
            output = run.stdout + run.stderr
            assert run.returncode == 1 and "Traceback" not in output, output
            assert "cannot write to the memory" in output and "readonly database" in output
            assert server.answered == []  # refused before anything was paid for
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)


@pytest.mark.postgres
def test_a_read_only_postgres_memory_ends_the_run_before_any_call_with_a_clear_error(tmp_path, postgres_url):
    """A PostgreSQL memory that refuses writes for good (a standby, ``default_transaction_read_only``):
    the run ends with the same clear error, nothing paid (before: a traceback of the INSERT)."""
    import sqlalchemy as sa

    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, "agentroute_batch_read_only")
    SQLMemory(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{sa.engine.make_url(url).database}" SET default_transaction_read_only = on')
    finally:
        engine.dispose()
    with StubOpenAIServer(delay_s=0.0) as server:
        paths = _setup(tmp_path, server.url, 5)
        run = subprocess.run(_command(paths, url), capture_output=True, text=True, timeout=300,
                             env={**os.environ, "COLUMNS": "200"})  # fmt: skip
        output = run.stdout + run.stderr
        assert run.returncode == 1 and "Traceback" not in output, output
        assert "cannot write to the memory" in output and "read-only transaction" in output, output
        assert server.answered == []


@pytest.mark.postgres
def test_a_memory_that_starts_refusing_steps_mid_run_stops_the_paying(tmp_path, postgres_url):
    """Mid-run the memory starts refusing the steps (an admin revokes INSERT on ``steps`` from the
    run's role) while claiming items still works: the run claims nothing more and ends with the
    clear error, only the calls then under way paid without a stored step (before: it went on to
    pay for every query of the batch, none of them recorded), and a resume finishes the batch."""
    import sqlalchemy as sa

    from agentroute.memory.pgserver import create_database

    n = 24  # 8 answered before the refusal, 16 after: twice what may be paid unstored
    url = create_database(postgres_url, "agentroute_batch_refused_mid_run")
    SQLMemory(url).close()
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS agentroute_runner")
        conn.exec_driver_sql("CREATE ROLE agentroute_runner LOGIN")
        conn.exec_driver_sql("GRANT ALL ON ALL TABLES IN SCHEMA public TO agentroute_runner")
    runner = sa.engine.make_url(url).set(username="agentroute_runner").render_as_string(hide_password=False)
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    try:
        with StubOpenAIServer(delay_s=0.2) as server:  # the pace at which each write is committed at once
            paths = _setup(tmp_path, server.url, n)
            run = subprocess.Popen(_command(paths, runner), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            deadline = time.monotonic() + 120
            while len(server.answered) < 8:
                assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
                time.sleep(0.01)
            with admin.begin() as conn:
                conn.exec_driver_sql("REVOKE INSERT ON steps FROM agentroute_runner")
            output = run.communicate(timeout=300)[0]
            stored = len(_memory_state(url)["steps"])
            # paid, not stored: the calls in flight at the revoke, and those answered just before it
            # whose steps the writer had not committed yet
            assert len(server.answered) - stored <= 2 * CONCURRENCY, (len(server.answered), stored)
            assert run.returncode == 1 and "Traceback" not in output, output
            assert "cannot write to the memory" in output and "permission denied for table steps" in output, output

            with admin.begin() as conn:
                conn.exec_driver_sql("GRANT INSERT ON steps TO agentroute_runner")
            resumed = subprocess.run(_command(paths, runner), capture_output=True, text=True, env=env, timeout=300)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        state = _memory_state(url)  # (a task whose step was refused keeps its row: its cost, no step)
        done = Counter(t["meta"]["query_id"] for t in state["tasks"] if t["status"] == "done")
        assert done == Counter({f"id{i}": 1 for i in range(n)})
        assert all(i["status"] == "done" for i in state["items"]) and len(state["items"]) == n
        assert len(server.answered) < 2 * n
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql("DROP OWNED BY agentroute_runner")
            conn.exec_driver_sql("DROP ROLE agentroute_runner")
        admin.dispose()
