"""Scores for tasks: ``agentroute feedback`` and gold answers scored by ``run --input``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentroute.batch import BatchRunner, read_jsonl_queries
from agentroute.cli.feedback_cmd import feedback_command
from agentroute.graph import AgentGraph
from agentroute.memory import SQLMemory
from agentroute.routers.baselines import CheapestRouter
from agentroute.types import Task
from tests.helpers import replay_pool

runner = CliRunner(env={"COLUMNS": "200"})
app = typer.Typer()
app.command()(feedback_command)


@pytest.fixture
def memory_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        task = Task(id="t1", query="who?", graph="qa")
        memory.start_task(task)
        task.status, task.answer = "done", "me"
        memory.finish_task(task)
    return url


def test_feedback_sets_the_task_score_and_keeps_the_comment(memory_url: str) -> None:
    result = runner.invoke(app, ["t1", "--score", "0.8", "--comment", "close", "--memory", memory_url])
    assert result.exit_code == 0, result.output
    with SQLMemory(memory_url) as memory:
        assert memory.get_task("t1").task.score == 0.8
        assert memory.stats()["feedback"] == 1
        assert [t.task.id for t in memory.trajectories(with_score=True)] == ["t1"]


def test_feedback_on_an_unknown_task_or_a_bad_score_fails_clearly(memory_url: str) -> None:
    result = runner.invoke(app, ["nope", "--score", "1", "--memory", memory_url])
    assert result.exit_code == 1 and "no task 'nope'" in result.output
    for bad in ("nan", "7", "-0.5"):  # routers learn scores in [0, 1]: one rule, at input
        result = runner.invoke(app, ["t1", "--score", bad, "--memory", memory_url])
        assert result.exit_code == 2 and "--score must be a number in [0, 1]" in result.output, result.output


def test_gold_answers_are_read_from_answer_and_answers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        {"query": "a", "answer": "x"},
        {"query": "b", "answers": ["y", "z"]},
        {"query": "c", "answer": 3},
        {"query": "d"},
        {"query": "e", "answer": {"bad": 1}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    items, bad = read_jsonl_queries(path)
    assert [i.get("gold") for i in items] == [["x"], ["y", "z"], ["3"], None]
    assert bad == [(5, "'answer' must be a string, a number or a list of them")]
    # the gold answer does not change the content id: ids stay those of earlier runs
    assert items[3]["query_id"] == read_jsonl_queries(path)[0][3]["query_id"]


@pytest.mark.parametrize("metric, expected", [("em", [1.0, 0.0]), ("contains", [1.0, 1.0])])
def test_a_batch_scores_finished_tasks_against_gold_as_feedback(tmp_path: Path, metric: str, expected: list[float]) -> None:
    pool = replay_pool(4)  # the cheapest model answers "small says <i>"
    items = [
        {"query": "zero?", "query_id": "q0", "gold": ["small says 0"]},
        {"query": "one?", "query_id": "q1", "gold": ["says 1"]},
        {"query": "two?", "query_id": "q2"},
    ]
    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        compiled = AgentGraph("one").add_role("executor", prompt="a").compile(pool=pool, router=CheapestRouter(), memory=memory)
        report = asyncio.run(BatchRunner(compiled, memory, batch_id="b", metric=metric).run(items))
        scores = {r.query_id: r.score for r in report.results}
        assert [scores["q0"], scores["q1"]] == expected and scores["q2"] is None
        stored = {t.task.metadata["query_id"]: t.task.score for t in memory.trajectories()}
        assert [stored["q0"], stored["q1"]] == expected  # q2: no gold, keeps the replay backend's own score
        assert memory.stats()["feedback"] == 2


def test_run_input_with_gold_scores_tasks_and_rejects_an_unknown_metric(tmp_path: Path) -> None:
    from agentroute.cli import app as cli
    from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml

    with StubOpenAIServer() as stub:
        (tmp_path / "pool.yaml").write_text(pool_yaml(stub.url))
        (tmp_path / "graph.py").write_text(GRAPH_PY)
        path = tmp_path / "in.jsonl"
        path.write_text(json.dumps({"query": "q?", "answer": "Stub answer."}) + "\n" + json.dumps({"query": "r?", "answers": ["other"]}) + "\n")
        base = ["run", str(tmp_path / "graph.py"), "--input", str(path), "--pool", str(tmp_path / "pool.yaml"),
                "--memory", f"sqlite:///{tmp_path}/m.db", "--out", str(tmp_path / "out.jsonl")]  # fmt: skip
        result = runner.invoke(cli, [*base, "--metric", "nope"])
        assert result.exit_code == 2 and "unknown --metric" in result.output
        result = runner.invoke(cli, [*base, "--metric", "em"])
    assert result.exit_code == 0, result.output
    assert "mean 0.500" in result.output
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["score"] for line in lines) == [0.0, 1.0]


def test_feedback_twice_keeps_both_rows_and_says_which_score_it_replaces(memory_url: str) -> None:
    first = runner.invoke(app, ["t1", "--score", "1", "--memory", memory_url])
    assert first.exit_code == 0 and "replaces" not in first.output
    second = runner.invoke(app, ["t1", "--score", "0", "--comment", "wrong after all", "--memory", memory_url])
    assert second.exit_code == 0, second.output
    assert "task t1 had score 1; the new score replaces it" in " ".join(second.output.split())
    with SQLMemory(memory_url) as memory:
        assert memory.get_task("t1").task.score == 0.0
        assert memory.stats()["feedback"] == 2
