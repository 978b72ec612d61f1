"""``agentroute memory export`` shows its progress on stderr (a large memory takes minutes), with
the number of tasks to export; standard output stays the data, and pipes and logs stay clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

N = 120


@pytest.fixture(scope="module")
def memory_url(tmp_path_factory):
    from agentroute.memory import SQLMemory
    from agentroute.types import Agent, Step, Task

    url = f"sqlite:///{tmp_path_factory.mktemp('export')}/memory.db"
    with SQLMemory(url) as memory:
        for i in range(N):
            task = Task(id=f"t{i:04d}", query=f"question {i}", graph="qa")
            memory.start_task(task)
            for k in range(2):
                memory.record_step(Step(task_id=task.id, index=k, stage="answer", agent=Agent(model="m"),
                                        output="o", cost_usd=0.001))  # fmt: skip
            task.status, task.answer = "done", "a"
            memory.finish_task(task)
    return url


def _export(url: str, *args: str, progress: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTROUTE_PROGRESS"} | {"OMP_NUM_THREADS": "1"}
    if progress is not None:
        env["AGENTROUTE_PROGRESS"] = progress
    return subprocess.run([sys.executable, "-m", "agentroute", "memory", "export", "--memory", url, *args],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip


def test_export_to_stdout_shows_progress_on_stderr_with_the_total(memory_url):
    done = _export(memory_url, "--out", "-", progress="1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == N and all(json.loads(line)["task"]["status"] == "done" for line in lines)
    assert "exporting" in done.stderr and f"/{N} " in done.stderr, done.stderr  # the total is known


def test_export_with_a_limit_counts_to_the_limit(memory_url, tmp_path):
    done = _export(memory_url, "--out", str(tmp_path / "out.jsonl"), "--limit", "7", progress="1")
    assert done.returncode == 0, done.stderr
    assert "/7 " in done.stderr and len((tmp_path / "out.jsonl").read_text().splitlines()) == 7


def test_parquet_export_shows_rows_written(memory_url, tmp_path):
    pytest.importorskip("pyarrow")
    done = _export(memory_url, "--out", str(tmp_path / "out.parquet"), "--format", "parquet", progress="1")
    assert done.returncode == 0, done.stderr
    assert "exporting" in done.stderr and f"{2 * N} rows" in done.stderr, done.stderr


def test_no_bar_when_stderr_is_not_a_terminal(memory_url):
    done = _export(memory_url, "--out", "-", progress=None)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == N
    assert "exporting" not in done.stderr and "\r" not in done.stderr
