"""`agentroute feedback` on a task still running: its finish rewrote the task row, score included,
so the feedback was lost without a word (the command said "the score is stored all the same")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.memory import SQLMemory
from agentroute.types import Task


def _feedback(url: str, task_id: str, score: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-m", "agentroute", "feedback", task_id, "--score", score, "--memory", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_feedback_on_a_running_task_is_refused_and_scores_it_once_it_has_ended(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        task = Task(query="who?", graph="qa")
        memory.start_task(task)
        memory.flush()
        refused = _feedback(url, task.id, "0.9")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "still running" in refused.stderr and "Traceback" not in refused.stderr
        task.status, task.answer = "done", "me"
        memory.finish_task(task)  # what the running process writes at its end
    scored = CliRunner().invoke(app, ["feedback", task.id, "--score", "0.9", "--memory", url])
    assert scored.exit_code == 0, scored.output
    with SQLMemory(url) as memory:
        assert memory.get_task(task.id).task.score == 0.9
        assert [t.task.score for t in memory.trajectories(with_score=True)] == [0.9]
        assert memory.stats()["feedback"] == 1  # the refused one left no row
