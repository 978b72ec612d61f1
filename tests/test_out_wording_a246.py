"""Small ``--out`` faults, as a user meets them (``python -m agentroute`` in a subprocess):

- ``memory export --out ./-`` wrote to standard output (``str(Path("./-")) == "-"``): it is a file
  named ``-``, as for ``run``;
- ``run web --out -`` whose reader left (``| head -1``) said "stopped by SIGPIPE" where ``run`` says
  "stopped by standard output closing (--out -)";
- ``run web --resume --out FILE`` said "N episode lines written" counting this run's episodes only,
  not the lines of the episodes finished earlier that it wrote to FILE too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli_out_folders_a232 import _agentroute
from tests.test_run_out_stdout_a242 import _env

EXPORTED = 3


def _memory_with_tasks(url: str) -> None:
    from agentroute.memory import open_memory
    from agentroute.types import Task

    with open_memory(url) as store:
        for i in range(EXPORTED):
            task = Task(query=f"question {i}", graph="one")
            store.start_task(task)
            task.status, task.answer = "done", "a"
            store.finish_task(task)


def test_memory_export_out_dot_slash_dash_is_a_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    _memory_with_tasks(url)
    to_file = _agentroute("memory", "export", "--memory", url, "--out", "./-", cwd=tmp_path)
    assert to_file.returncode == 0, to_file.stderr
    assert '"query"' not in to_file.stdout  # before: the trajectories on standard output, no file
    assert len((tmp_path / "-").read_text().splitlines()) == EXPORTED
    assert f"wrote {EXPORTED} trajectories to ./-" in " ".join(to_file.stdout.split())
    (tmp_path / "-").unlink()
    to_stdout = _agentroute("memory", "export", "--memory", url, "--out", "-", cwd=tmp_path)
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert len(to_stdout.stdout.splitlines()) == EXPORTED and not (tmp_path / "-").exists()


WEB = ["run", "web", "--tasks", "click-test", "--router", "always-skill"]


@pytest.mark.browser
def test_run_web_says_what_run_says_when_its_reader_leaves(chromium, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "agentroute", *WEB, "--episodes", "6", "--concurrency", "1",
               "--memory", f"sqlite:///{tmp_path / 'web.db'}", "--out", "-"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=proc.stdout, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -1`: head holds the only reading end
    try:
        first, _ = head.communicate(timeout=120)
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    finally:
        proc.stderr.close()
        for each in (proc, head):
            if each.poll() is None:
                each.kill()
                each.wait()
    assert json.loads(first)["task"] == "click-test"
    assert proc.returncode == 141, err[-2000:]
    said = " ".join(err.split())
    assert "stopped by standard output closing (--out -)" in said, said[-1500:]
    assert "SIGPIPE" not in said


@pytest.mark.browser
def test_run_web_resume_counts_every_line_it_wrote(chromium, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    first = _agentroute(*WEB, "--episodes", "1", "--memory", url, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    resumed = _agentroute(
        *WEB, "--episodes", "2", "--memory", url, "--resume", "--out", "out.jsonl", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (
        len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    )  # the earlier episode's line, then this run's
    said = " ".join(resumed.stdout.split())
    assert "2 episode lines written to out.jsonl" in said, said[-1500:]  # before: "1 episode line written"
