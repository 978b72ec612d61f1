"""``agentroute run --out -`` writes its JSON lines to standard output, as ``memory export --out -``
does, as a user of a jq pipeline meets it (``python -m agentroute`` in a subprocess, a stub
OpenAI server on loopback). It wrote a file named ``-`` in the current folder, silently, and the
progress bar and summary went to standard output. Now each finished task's line reaches the
consumer as the task finishes, everything else goes to standard error, a consumer that closes
early (``| head -1``) ends the run quietly with 141 (128 + SIGPIPE) and the memory whole, and a
file named ``-`` is still ``./-``. Folder options (``eval``, ``train``, ``routers show``) refuse
``--out -`` in one line (exit 2) rather than creating a folder named ``-``."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentroute.memory import open_memory
from tests.test_batch_server import StubOpenAIServer
from tests.test_cli_out_folders_a232 import SOURCE, _agentroute, _eval_args, _run_args, logs  # noqa: F401 - the logs fixture

QUERIES = 4


def _command(tmp_path: Path, server: StubOpenAIServer, *extra: str) -> list[str]:
    args = _run_args(tmp_path, server)
    (tmp_path / "in.jsonl").write_text("".join(f'"question {i}?"\n' for i in range(QUERIES)))
    return [sys.executable, "-m", "agentroute", *map(str, args), "--concurrency", "1", *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _stdout_lines(proc: subprocess.Popen[bytes]) -> tuple[queue.Queue[bytes], threading.Thread]:
    """The lines of ``proc``'s standard output as they come (``b""`` at its end)."""
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            lines.put(line)
        lines.put(b"")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


@pytest.fixture
def held() -> Iterator[StubOpenAIServer]:
    """A stub server that answers the first call at once and holds the later ones until ``release``."""
    with StubOpenAIServer(hold_after=1) as server:
        yield server


def test_each_line_reaches_a_consumer_as_its_task_finishes_and_nothing_else_is_on_stdout(tmp_path, held):
    proc = subprocess.Popen(_command(tmp_path, held, "--out", "-"), cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    lines, reader = _stdout_lines(proc)
    try:
        try:
            first = lines.get(timeout=60)  # the later calls are held: the run cannot have ended
        except queue.Empty:
            first = b""
        assert first and proc.poll() is None, "no line on stdout while the run went on"
        assert json.loads(first)["status"] == "done"
    finally:
        held.release.set()
        assert proc.stderr is not None
        err = proc.stderr.read()  # (not communicate(): the reader thread owns stdout)
        proc.wait(timeout=120)
        proc.stderr.close()
        reader.join(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
    rest = list(iter(lines.get_nowait, b""))
    assert proc.returncode == 0, err.decode()
    records = [json.loads(line) for line in [first, *rest]]  # every line of stdout is one JSON object
    assert sorted(r["query"] for r in records) == [f"question {i}?" for i in range(QUERIES)]
    assert f"{QUERIES} tasks" in err.decode() and "whole batch" in err.decode()  # the summary: on stderr
    assert not (tmp_path / "-").exists()


def test_a_consumer_closing_early_ends_the_run_quietly_with_141_and_resume_finishes_it(tmp_path):
    # each call takes 1 s: the query claimed after the line that meets the closed pipe is still in flight
    with StubOpenAIServer(hold_after=1, delay_s=1.0) as held:
        _closing_early(tmp_path, held)


def _closing_early(tmp_path: Path, held: StubOpenAIServer) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    proc = subprocess.Popen(_command(tmp_path, held, "--out", "-"), cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    head = subprocess.Popen(["head", "-1"], stdin=proc.stdout, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -1`: head holds the only reading end
    try:
        first, _ = head.communicate(timeout=60)  # head read one line and is gone
    finally:
        held.release.set()  # the held call's line then meets the closed pipe
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
        proc.stderr.close()
        if head.poll() is None:
            head.kill()
            head.wait()
    assert json.loads(first)["status"] == "done"
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert "--resume" in err  # what is left, and how to finish it
    with open_memory(url) as store:  # every call paid is stored, no task left running
        tasks = store.stats()["tasks"]
        assert tasks.get("running", 0) == 0 and tasks.get("done", 0) == len(held.answered) >= 2, tasks

    resumed = subprocess.run(_command(tmp_path, held, "--out", "-", "--resume"), cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=180)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in resumed.stdout.splitlines()]
    # standard output is a new file each run: the lines of the queries finished earlier, then this run's
    assert sorted(r["query"] for r in records) == [f"question {i}?" for i in range(QUERIES)]
    assert len(held.answered) == QUERIES  # nothing was paid twice
    assert not (tmp_path / "-").exists()


def test_a_file_named_dash_is_still_written_as_dot_slash_dash(tmp_path):
    with StubOpenAIServer() as server:
        proc = _agentroute(*_command(tmp_path, server, "--out", "./-")[3:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "-").read_text().splitlines()) == QUERIES
    assert "whole batch" in proc.stdout and '"query_id"' not in proc.stdout  # stdout: the summary, as before


def _refused(proc: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and "--out -" in lines[0] and "folder" in lines[0], proc.stderr
    assert not (tmp_path / "-").exists()


def test_eval_refuses_out_dash_in_one_line(tmp_path, logs):  # noqa: F811
    _refused(_agentroute(*_eval_args(logs), "--out", "-", cwd=tmp_path), tmp_path)


def test_train_refuses_out_dash_in_one_line(tmp_path, logs):  # noqa: F811
    _refused(_agentroute("train", "per-task", "--dataset", f"outcomes:{logs}", "--out", "-", cwd=tmp_path), tmp_path)


def test_routers_show_refuses_out_dash_in_one_line(tmp_path, logs):  # noqa: F811
    _refused(_agentroute("routers", "show", "per-task", "--state", logs.parent / "r", "--out", "-", cwd=tmp_path), tmp_path)


@pytest.mark.browser
def test_run_web_out_dash_writes_the_episode_lines_to_stdout_and_the_table_to_stderr(chromium, tmp_path):
    web = ["run", "web", "--tasks", "click-test,enter-text", "--episodes", "1", "--router", "always-skill"]
    proc = _agentroute(*web, "--memory", f"sqlite:///{tmp_path / 'web.db'}", "--out", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["task"] for r in records) == ["click-test", "enter-text"]
    assert "episodes/min" in proc.stderr and "written to standard output" in proc.stderr
    assert not (tmp_path / "-").exists()


def test_a_stdout_that_cannot_be_written_is_one_error_line_with_exit_1(tmp_path):
    """``--out - > /dev/full`` (a full disk): the run stops, says so in one line, and exits 1."""
    with StubOpenAIServer() as server, open("/dev/full", "wb") as full:
        proc = subprocess.run(_command(tmp_path, server, "--out", "-"), cwd=tmp_path, env=_env(), stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=180)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1 and "--out -: cannot write standard output (No space left on device)" in errors[0]
    assert "Traceback" not in proc.stderr
    with open_memory(f"sqlite:///{tmp_path / 'm.db'}") as store:
        assert store.stats()["tasks"].get("done", 0) == len(server.answered) >= 1


def test_out_dev_stdout_appended_to_a_file_keeps_the_file_and_gets_the_lines_only(tmp_path):
    """``--out /dev/stdout >> all.jsonl`` opened the file anew, truncated: its earlier lines were lost."""
    all_lines = tmp_path / "all.jsonl"
    all_lines.write_text('{"earlier": true}\n')
    with StubOpenAIServer() as server, all_lines.open("ab") as appended:
        proc = subprocess.run(_command(tmp_path, server, "--out", "/dev/stdout"), cwd=tmp_path, env=_env(),
                              stdout=appended, stderr=subprocess.PIPE, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in all_lines.read_text().splitlines()]
    assert records[0] == {"earlier": True} and len(records) == 1 + QUERIES
    assert "whole batch" in proc.stderr
