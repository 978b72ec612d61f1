"""Review of ``run --out -`` (agentroute/out_path.py ``StdoutLines``), as a user meets it: a
``python -m agentroute`` subprocess writing to a pipe, a stub OpenAI server on loopback.

A reader that stalls (``| less`` left on its first page) once the batch has ended holds the command
in the relay of its last lines; a Ctrl-C then ended it (130) but left its private temp folder
behind, a copy of every line, in ``$TMPDIR``, and a SIGTERM there (a second one: the first stops
the batch) killed it (-15), the folder left too."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agentroute.memory import open_memory
from tests.test_batch_server import StubOpenAIServer
from tests.test_run_out_stdout_a242 import _command, _env

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
QUERIES = 40  # their lines: about 17 kB, more than the pipe holds


def _done_tasks(url: str) -> int:
    try:
        with open_memory(url) as store:
            return int(store.stats()["tasks"].get("done", 0))
    except Exception:  # noqa: BLE001 - not created yet
        return 0


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_while_the_last_lines_wait_for_a_stalled_reader_removes_the_temp_folder(
    tmp_path, signum, code
):
    temp = tmp_path / "tmp"
    temp.mkdir()
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # one page: a few lines fill it, the reader reads none
    url = f"sqlite:///{tmp_path / 'm.db'}"
    try:
        with StubOpenAIServer() as server:
            command = _command(tmp_path, server, "--out", "-", "--concurrency", "8")
            (tmp_path / "in.jsonl").write_text("".join(f'"question {i}?"\n' for i in range(QUERIES)))
            proc = subprocess.Popen(command, cwd=tmp_path,
                                    env={**_env(), "TMPDIR": str(temp)}, stdout=write_end,
                                    stderr=subprocess.PIPE)  # fmt: skip
            os.close(write_end)
            write_end = -1
            try:
                deadline = time.monotonic() + 120
                while _done_tasks(url) < QUERIES and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.2)
                assert _done_tasks(url) == QUERIES
                time.sleep(1.0)  # the batch ends; its last lines wait for the reader
                assert proc.poll() is None, "the lines were not held by the stalled reader"
                assert list(temp.glob("agentroute-out-*")), "no relay folder while lines wait"
                # the signal again if the batch's own stop took the first
                while proc.poll() is None and time.monotonic() < deadline:
                    proc.send_signal(signum)
                    try:
                        proc.wait(timeout=3)
                    except subprocess.TimeoutExpired:
                        pass
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                assert proc.stderr is not None
                err = proc.stderr.read().decode()
                proc.stderr.close()
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert proc.returncode == code, err
    assert not list(temp.glob("agentroute-out-*")), "the relay's temp folder was left behind"


EPISODES = 40  # their lines: about 14 kB, more than the pipe holds


@pytest.mark.browser
def test_run_web_plays_on_while_its_reader_stalls_and_stops_on_sigterm(chromium, tmp_path):
    """``run web --out -`` wrote each episode's line on the event loop: a full pipe froze every
    episode, and SIGTERM (handled on that loop) could not stop it while the reader read nothing."""
    temp = Path(tempfile.mkdtemp(prefix="r246-"))  # short: Chromium's sockets go there too
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    url = f"sqlite:///{tmp_path / 'web.db'}"
    command = [sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--episodes",
               str(EPISODES), "--router", "always-skill", "--memory", url, "--out", "-"]  # fmt: skip
    try:
        proc = subprocess.Popen(command, cwd=tmp_path, env={**_env(), "TMPDIR": str(temp)}, stdout=write_end,
                                stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        os.close(write_end)
        write_end = -1
        try:
            deadline = time.monotonic() + 120
            while _done_tasks(url) < EPISODES - 5 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            played = _done_tasks(url)
            while (
                proc.poll() is None and time.monotonic() < deadline
            ):  # again once the lines wait for the reader
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
            proc.stderr.close()
        left = list(temp.glob("agentroute-out-*"))
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        shutil.rmtree(temp, ignore_errors=True)
    assert played >= EPISODES - 5, f"the episodes stopped at {played} with the reader stalled: {err[-1500:]}"
    assert proc.returncode == 143, err[-2000:]
    assert not left, "the relay's temp folder was left behind"


@pytest.mark.browser
@pytest.mark.parametrize("episodes", [1, 2])  # 1: its line may meet the full disk after the run ended
def test_run_web_to_a_stdout_that_cannot_be_written_is_one_error_line_with_exit_1(
    chromium, tmp_path, episodes
):
    """``run web --out - > /dev/full`` said "stopped by SIGPIPE" and exited 141, as if a reader had
    left; ``run`` says why in one error line and exits 1."""
    url = f"sqlite:///{tmp_path / 'web.db'}"
    command = [sys.executable, "-m", "agentroute", "run", "web", "--tasks", "click-test", "--episodes",
               str(episodes), "--router", "always-skill", "--memory", url, "--out", "-"]  # fmt: skip
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(command, cwd=tmp_path, env=_env(), stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=180)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1 and "--out -: cannot write standard output (No space left on device)" in errors[0]
    assert "SIGPIPE" not in proc.stderr and "Traceback" not in proc.stderr
