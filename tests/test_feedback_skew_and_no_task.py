"""What a user sees of feedback that does not score its task (SQLite and PostgreSQL).

- A feedback dated in the future (given on a host whose clock runs ahead) stays the task's newest:
  ``agentroute feedback`` said "the new score replaces it" and the task kept the other score.
- Feedback on an id that names no stored task (a typo through the SDK) is kept and scores nothing:
  ``memory stats`` counted it among the feedback, with nothing to tell it apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from agentroute.memory import SQLMemory
from agentroute.memory.pgserver import create_database
from agentroute.types import Task, new_id
from tests.fixtures_memory import memory_url, statements  # noqa: F401 - a fixture
from tests.test_feedback_pending_and_newest import ENV, ROOT, feedback_cli

# A process on a host whose clock runs an hour ahead gives a feedback.
AHEAD = """
import sys
from datetime import datetime, timedelta
import agentroute.memory.sql as sql
from agentroute.memory import SQLMemory

class Ahead(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(hours=1)

sql.datetime = Ahead
with SQLMemory(sys.argv[1]) as memory:
    memory.add_feedback(sys.argv[2], 0.2, source="ahead")
"""


def test_cli_feedback_behind_a_future_dated_one_says_the_task_keeps_it(memory_url: str) -> None:  # noqa: F811
    task = Task(query="who?", graph="qa", status="done", answer="me")
    with SQLMemory(memory_url) as memory:
        memory.start_task(task)
    ahead = subprocess.run([sys.executable, "-c", AHEAD, memory_url, task.id], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)  # fmt: skip
    assert ahead.returncode == 0, ahead.stderr
    done = feedback_cli(memory_url, task.id, 0.9)
    assert done.returncode == 0, done.stderr  # stored all the same
    text = " ".join(done.stderr.split())
    assert "replaces it" not in text, text  # was: "had score 0.2; the new score replaces it"
    assert f"task {task.id} keeps score 0.2 (ahead)" in text, text
    with SQLMemory(memory_url) as memory:
        stored = memory.get_task(task.id)
        assert stored is not None and stored.task.score == 0.2
    again = feedback_cli(memory_url, task.id, 0.7)  # a plain second feedback still says what it replaces
    assert "keeps score" in again.stderr and "replaces it" not in again.stderr, again.stderr


def test_cli_feedback_that_scores_says_what_it_replaces(memory_url: str) -> None:  # noqa: F811
    task = Task(query="who?", graph="qa", status="done", answer="me")
    with SQLMemory(memory_url) as memory:
        memory.start_task(task)
    assert feedback_cli(memory_url, task.id, 0.3).returncode == 0
    done = feedback_cli(memory_url, task.id, 0.9)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stderr.split())
    assert f"task {task.id} had score 0.3; the new score replaces it" in text, text
    assert "keeps score" not in text, text


def test_memory_stats_tells_feedback_on_no_stored_task(memory_url: str) -> None:  # noqa: F811
    task = Task(query="who?", graph="qa", status="done", answer="me")
    with SQLMemory(memory_url) as memory:
        memory.start_task(task)
        memory.add_feedback(task.id, 1.0)
        memory.add_feedback(task.id[:-1] + "x", 0.0)  # a typo: no such task
        memory.add_feedback(new_id(), 0.5)  # a task not stored (yet)
        memory.flush()
        figures = memory.stats()
    assert figures["feedback"] == 3 and figures["feedback_no_task"] == 2  # was: no way to tell
    stats = subprocess.run([sys.executable, "-m", "agentroute", "memory", "stats", "--json", "--memory", memory_url], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)  # fmt: skip
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["feedback_no_task"] == 2
    shown = subprocess.run([sys.executable, "-m", "agentroute", "memory", "stats", "--memory", memory_url], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)  # fmt: skip
    assert stats.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "on no stored task │ 2" in text or "on no stored task 2" in text, text
    assert "2 feedback row(s) name no stored task" in text, text


@pytest.mark.postgres
def test_a_postgresql_task_write_applies_feedback_in_its_upsert(postgres_url: str) -> None:
    """A transaction that writes only task rows runs the gate and one upsert for them all (it ran a
    second statement, the feedback rule's UPDATE, on every task write); one with feedback runs it."""
    url = create_database(postgres_url, f"feedback_{uuid.uuid4().hex[:12]}")
    tasks = [Task(query=f"q{i}?", graph="qa") for i in range(3)]
    with SQLMemory(url, prompt_commit=False, flush_interval_s=3600) as memory:
        memory.add_feedback(tasks[0].id, 0.25)  # before its row: the row's upsert scores it
        memory.flush()
        with statements(memory.engine) as seen:
            for task in tasks:
                memory.start_task(task)
            memory.flush()
        writes = [s for s in seen if not s.startswith(("SELECT PG_ADVISORY", "BEGIN", "COMMIT"))]
        assert len(writes) == 1 and writes[0].startswith("INSERT INTO TASKS"), writes  # was: + UPDATE TASKS
        with statements(memory.engine) as seen:
            memory.finish_task(tasks[0].model_copy(update={"status": "done", "score": 1.0}))
            memory.add_feedback(tasks[1].id, 0.5)
            memory.flush()
        assert any(s.startswith("UPDATE TASKS") for s in seen), seen
        assert [memory.get_task(t.id).task.score for t in tasks] == [0.25, 0.5, None]  # type: ignore[union-attr]
