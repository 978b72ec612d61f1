"""Feedback on a task still running: its end rewrote the task row, score included, so the feedback
was lost without a word (the CLI said "stored all the same"; then it refused, exit 1). Now the
latest feedback is the task's score whichever lands first, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.memory import SQLMemory
from agentroute.types import Agent, Step, Task
from tests.fixtures_postgres import checkpoint_db, postgres_url  # noqa: F401 - fixtures


def _feedback(url: str, task_id: str, score: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-m", "agentroute", "feedback", task_id, "--score", score, "--memory", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'memory.db'}" if request.param == "sqlite" else request.getfixturevalue("checkpoint_db")


def test_feedback_on_a_running_task_is_its_score_once_it_has_ended(url: str) -> None:
    """One task ends with no score of its own, one with its step's (what ``dispatcher.finish``
    gives): the feedback given while they ran is their score, and a resume keeps it too."""
    with SQLMemory(url) as memory:
        plain, stepped = Task(query="who?", graph="qa"), Task(query="where?", graph="qa")
        for task in (plain, stepped):
            memory.start_task(task)
        memory.record_step(Step(task_id=stepped.id, index=0, stage="x", agent=Agent(model="m"), score=1.0))
        memory.flush()
        given = CliRunner().invoke(app, ["feedback", plain.id, "--score", "0.25", "--memory", url])
        assert given.exit_code == 0, given.output
        memory.add_feedback(stepped.id, 0.0)
        memory.flush()
        for task, own in ((plain, None), (stepped, 1.0)):
            memory.finish_task(task.model_copy(update={"status": "done", "answer": "a", "score": own}))
        memory.flush()
        assert [memory.get_task(t.id).task.score for t in (plain, stepped)] == [0.25, 0.0]
        memory.start_task(plain.model_copy(update={"status": "running"}))  # a resume brings no score
        memory.flush()
        assert memory.get_task(plain.id).task.score == 0.25
        memory.add_feedback(plain.id, 1.0)  # the latest feedback wins
        memory.finish_task(plain.model_copy(update={"status": "done", "score": 0.5}))
        memory.flush()
        assert memory.get_task(plain.id).task.score == 1.0
        assert memory.stats()["feedback"] == 3


def test_feedback_outside_0_1_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        task = Task(query="who?", graph="qa", status="done")
        memory.start_task(task)
    refused = _feedback(url, task.id, "5")
    assert refused.returncode == 2 and "--score must be a number in [0, 1]" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    with SQLMemory(url) as memory:
        assert memory.stats()["feedback"] == 0
