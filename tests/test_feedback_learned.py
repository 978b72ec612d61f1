"""Routers learn from feedback: a task's feedback is the score its last step (a one-step task's only
one) is learned and judged by, in ``train --from``, ``memory export --format outcomes`` and
``eval --from``'s fits alike. Before, a step's own score (a backend's reported score, the web
agent's reward) beat the feedback given later, so a router trained on the memory ignored it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.memory import SQLMemory
from agentroute.routers.base import Router
from agentroute.types import Agent, RouteContext, Step, Task

MODELS = ("small", "large")


def _log(url: str, n: int) -> list[Task]:
    """``n`` one-step tasks per model, each step scored by its own call (small 1.0, large 0.0), the
    task's end taking that score as the task's (what ``dispatcher.finish`` does)."""
    tasks = []
    with SQLMemory(url) as memory:
        for i in range(n):
            for model in MODELS:
                own = 1.0 if model == "small" else 0.0
                task = Task(query=f"question {i} {model}", graph="qa", status="done", answer="a", score=own)
                memory.start_task(task.model_copy(update={"status": "running", "score": None}))
                memory.record_step(Step(task_id=task.id, index=0, stage="executor", agent=Agent(model=model), score=own, output="a"))
                memory.finish_task(task)
                tasks.append(task)
    return tasks


def test_train_and_export_from_the_memory_follow_the_feedback_over_the_steps_own_scores(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    runner = CliRunner()
    for task in _log(url, 3):  # the users say the opposite: large was right, small wrong
        wrong = task.score == 1.0
        scored = runner.invoke(app, ["feedback", task.id, "--score", "0" if wrong else "1", "--memory", url])
        assert scored.exit_code == 0, scored.output
    out = tmp_path / "outcomes.jsonl"
    exported = runner.invoke(app, ["memory", "export", "--format", "outcomes", "--out", str(out), "--memory", url])
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["model"], r["score"]) for r in rows} == {("small", 0.0), ("large", 1.0)}
    trained = runner.invoke(app, ["train", "strongest", "--from", url, "--out", str(tmp_path / "r")])
    assert trained.exit_code == 0, trained.output
    router = Router.load(tmp_path / "r")
    ctx = RouteContext(query="question 9", candidates=[Agent(model=m) for m in MODELS])
    assert router.route(ctx).agent.model == "large"
