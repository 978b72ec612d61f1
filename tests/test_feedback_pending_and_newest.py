"""Feedback given from other processes: the newest wins, and feedback that lands before its task's row
is kept (SQLite and PostgreSQL, each writer a process of its own).

- Two feedbacks on one task: the task's score was the one committed last, not the one given last
  (an older feedback held in its process's queue while a newer one was stored).
- Feedback on a task whose row its process has not written yet (a task still running elsewhere, or
  ended and not yet flushed): ``agentroute feedback`` refused it ("no task"), and
  ``Memory.add_feedback`` stored it without scoring the task once its row arrived (SQLite; on
  PostgreSQL the task's write already read it).
- ``memory export --format outcomes``' count (its progress bar's total) counted a scored task that
  has no learned step, which is not exported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentroute.memory import SQLMemory
from agentroute.memory.codec import FEEDBACK_KEY
from agentroute.memory.export import count_learned, learned_trajectories
from agentroute.memory.pgserver import create_database
from agentroute.types import Agent, Step, Task, new_id
from tests.fixtures_memory import memory_url  # noqa: F401 - a fixture
from tests.test_feedback_end_race import _wait_for

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}

# A process whose writes wait in its memory's queue (no prompt commit, an hour's batch) until told.
HELD = """
import sys
from agentroute.memory import SQLMemory
from agentroute.types import Task
url, what, task_id, score = sys.argv[1:5]
memory = SQLMemory(url, prompt_commit=False, flush_interval_s=3600)
if what == "task":
    task = Task(id=task_id, query="who?", graph="qa")
    memory.start_task(task)
    memory.finish_task(task.model_copy(update={"status": "done", "answer": "me", "score": float(score)}))
else:
    memory.add_feedback(task_id, float(score), source="held")
print("queued", flush=True)
sys.stdin.readline()
memory.close()
print("stored", flush=True)
"""


@contextmanager
def held(url: str, what: str, task_id: str, score: float) -> Iterator[subprocess.Popen[str]]:
    """A process that has queued a task (``what="task"``) or a feedback, stored once a line is sent."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD, url, what, task_id, str(score)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "queued\n", proc.stderr and proc.stderr.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def release(proc: subprocess.Popen[str]) -> None:
    """Let a :func:`held` process store what it queued, and wait for it to end."""
    out, err = proc.communicate("go\n", timeout=120)
    assert proc.returncode == 0 and out.endswith("stored\n"), err


def feedback_cli(url: str, task_id: str, score: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentroute", "feedback", task_id, "--score", str(score), "--memory", url],
        capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120,
    )  # fmt: skip


def test_the_newest_feedback_wins_whichever_commits_last(memory_url: str) -> None:  # noqa: F811
    task = Task(query="who?", graph="qa", status="done", answer="me")
    with SQLMemory(memory_url) as memory:
        memory.start_task(task)
    with held(memory_url, "feedback", task.id, 0.2) as older:  # given first, stored last
        done = feedback_cli(memory_url, task.id, 0.9)
        assert done.returncode == 0, done.stderr
        release(older)
    with SQLMemory(memory_url) as memory:
        stored = memory.get_task(task.id)
        assert stored is not None
        assert stored.task.score == 0.9  # was 0.2: the feedback committed last
        assert stored.task.metadata[FEEDBACK_KEY] == "user"
        assert memory.stats()["feedback"] == 2


def test_cli_feedback_before_the_tasks_row_is_kept(memory_url: str) -> None:  # noqa: F811
    task_id = new_id()
    with held(memory_url, "task", task_id, 1.0) as ender:  # ended, its row still in its queue
        done = feedback_cli(memory_url, task_id, 0.3)
        assert done.returncode == 0, done.stderr  # was 1: "no task"
        assert "stored; no task with this id yet" in " ".join(done.stderr.split()), done.stderr
        release(ender)
    with SQLMemory(memory_url) as memory:
        stored = memory.get_task(task_id)
        assert stored is not None and stored.task.status == "done"
        assert stored.task.score == 0.3  # the feedback's, over the task's own 1.0
        assert stored.task.metadata[FEEDBACK_KEY] == "user"
        assert [t.task.id for t in memory.trajectories(with_score=True)] == [task_id]


def test_sdk_feedback_before_the_tasks_row_is_kept(memory_url: str) -> None:  # noqa: F811
    task_id = new_id()
    with held(memory_url, "task", task_id, 1.0) as ender:
        with held(memory_url, "feedback", task_id, 0.4) as judge:
            release(judge)  # stored first: no task row yet
        release(ender)
    with SQLMemory(memory_url) as memory:
        stored = memory.get_task(task_id)
        assert stored is not None
        assert stored.task.score == 0.4  # was 1.0 on SQLite: the feedback stored before the row scored nothing


def test_cli_feedback_on_an_id_that_is_no_task_says_so(memory_url: str) -> None:  # noqa: F811
    with SQLMemory(memory_url) as memory:
        memory.start_task(Task(query="who?", graph="qa"))
    done = feedback_cli(memory_url, "nope", 0.5)  # not an id agentroute makes: a typo, refused
    assert done.returncode == 1 and "no task 'nope'" in done.stderr, done.stderr
    unknown = new_id()
    done = feedback_cli(memory_url, unknown, 0.5)  # an id's shape: kept for a task not stored yet
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stderr.split())
    assert f"stored; no task with this id yet: {unknown}" in text, text
    with SQLMemory(memory_url) as memory:
        assert memory.stats()["feedback"] == 1
        assert memory.get_task(unknown) is None


def test_the_learned_count_is_what_is_exported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    agent = Agent(role="executor", model="small", strategy="direct")
    with SQLMemory(url) as memory:
        answered = Task(query="a?", graph="qa", status="done", answer="x")
        memory.start_task(answered)
        memory.record_step(Step(task_id=answered.id, index=0, stage="answer", agent=agent, output="x"))
        memory.add_feedback(answered.id, 1.0)
        stepless = Task(query="b?", graph="qa", status="done", answer="")  # scored, no step to learn from
        memory.start_task(stepless)
        memory.add_feedback(stepless.id, 0.0)
        memory.flush()
        assert len(list(learned_trajectories(memory))) == 1
        assert count_learned(memory) == 1  # was 2
        assert count_learned(memory, limit=1) == 1
    out = tmp_path / "o.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "agentroute", "memory", "export", "--format", "outcomes", "--memory", url, "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**ENV, "AGENTROUTE_PROGRESS": "1"}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 1
    assert "/1 " in done.stderr and "/2 " not in done.stderr, done.stderr  # the bar's total (was /2)



@pytest.mark.postgres
def test_the_newest_feedback_wins_when_both_wait_for_the_tasks_row(postgres_url: str) -> None:
    """Both feedbacks' transactions wait for the task's row (held by a third session): the older one,
    let go last, read a snapshot without the newer and wrote its score over it."""
    url = create_database(postgres_url, f"feedback_{uuid.uuid4().hex[:12]}")
    task = Task(query="who?", graph="qa", status="done", answer="me")
    with SQLMemory(url) as memory:
        memory.start_task(task)
    engine = sa.create_engine(url)
    try:
        with held(url, "feedback", task.id, 0.2) as older, engine.connect() as holder:
            holder.execute(sa.text("SELECT id FROM tasks WHERE id = :t FOR UPDATE"), {"t": task.id})
            newer = subprocess.Popen(
                [sys.executable, "-m", "agentroute", "feedback", task.id, "--score", "0.9", "--memory", url],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV,
            )  # fmt: skip
            try:
                _wait_for(engine, 1, lambda: newer.poll() is None)  # the newer waits for the row
                assert older.stdin is not None
                older.stdin.write("go\n")
                older.stdin.flush()
                _wait_for(engine, 2, lambda: older.poll() is None)  # and the older behind it
            finally:
                holder.rollback()
                _, err = newer.communicate(timeout=60)
            assert newer.returncode == 0, err
            release(older)
    finally:
        engine.dispose()
    with SQLMemory(url) as memory:
        stored = memory.get_task(task.id)
        assert stored is not None and stored.task.score == 0.9  # was 0.2
