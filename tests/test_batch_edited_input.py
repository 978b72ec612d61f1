"""`agentroute run --resume` over an input edited since the batch ran (a line added): its default
batch id is new, so every query already done ran and was paid for again, without a word."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from agentroute.batch import default_batch_id, done_elsewhere, fresh_batch_id
from agentroute.cli import app
from agentroute.memory import BatchQueue, SQLMemory
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml


@pytest.fixture(scope="module")
def server():
    with StubOpenAIServer() as stub:
        yield stub


def test_resume_of_an_edited_input_names_the_batch_holding_its_done_queries(tmp_path: Path, server) -> None:
    (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"query": f"question {i}?"}) + "\n" for i in range(3)))

    def run(*extra: str):
        return CliRunner().invoke(app, [
            "run", str(tmp_path / "graph.py"), "--input", str(path), "--pool", str(tmp_path / "pool.yaml"),
            "--memory", f"sqlite:///{tmp_path}/m.db", "--resume", *extra,
        ])  # fmt: skip

    first = run()
    assert first.exit_code == 0, first.output
    calls = len(server.answered)
    with path.open("a") as fh:
        fh.write(json.dumps({"query": "question 3?"}) + "\n")
    edited = run()
    assert edited.exit_code == 1, edited.output
    text = " ".join(edited.output.split())
    assert "3 of its 4 queries are done in batch" in text
    earlier = re.search(r"--resume --batch (\S+)`", text).group(1)
    assert len(server.answered) == calls  # nothing paid again
    joined = run("--batch", earlier)
    assert joined.exit_code == 0, joined.output
    assert len(server.answered) == calls + 1  # only the added line runs


def test_the_refusal_says_which_unfinished_queries_of_that_batch_are_no_longer_in_the_input(tmp_path: Path, server) -> None:
    """A failed line edited (a new content id): the named batch still holds the old line, which its
    ``--resume --batch`` runs again; the refusal said nothing of it."""
    (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    path = tmp_path / "in.jsonl"

    def run(lines: list[dict]):
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return CliRunner().invoke(app, [
            "run", str(tmp_path / "graph.py"), "--input", str(path), "--pool", str(tmp_path / "pool.yaml"),
            "--memory", f"sqlite:///{tmp_path}/m.db", "--resume",
        ])  # fmt: skip

    broken = {"query_id": "b", "query": "broken?", "metadata": "not an object"}
    assert run([{"query_id": "a", "query": "fine?"}, broken]).exit_code == 1  # b failed
    edited = run([{"query_id": "a", "query": "fine?"}, {"query_id": "b2", "query": "fixed?"}])
    assert edited.exit_code == 1, edited.output
    assert "its 1 unfinished query not in this input (b) run too" in " ".join(edited.output.split())


def test_done_elsewhere_counts_finished_queries_of_the_graphs_other_batches_only(memory_url: str) -> None:  # noqa: F811
    with SQLMemory(memory_url) as memory:
        default = default_batch_id("g_1", [{"query_id": "q1"}, {"query_id": "q2"}])
        fresh = fresh_batch_id(default)
        for batch, ids in ((default, ["q1", "q2"]), (fresh, ["q1"]), ("gx1-0123456789ab", ["q1", "q2"])):
            BatchQueue(memory, batch).add([(q, {"query": q}) for q in ids])
            with memory.engine.begin() as conn:
                conn.execute(sa.text("UPDATE batch_items SET status = 'done' WHERE batch_id = :b"), {"b": batch})
        lines = [(q, {"query": q}) for q in ("q1", "q2", "q3")]
        assert done_elsewhere(memory, "g_1", "g_1-new", lines) == (default, 2)
        assert done_elsewhere(memory, "g_1", default, lines) == (fresh, 1)  # gx1-…: another graph ("_" is no wildcard)
        assert done_elsewhere(memory, "g_1", "g_1-new", [("q1", {"query": "another text"})]) is None  # ids per file
        assert done_elsewhere(memory, "g_1", "g_1-new", [("q2", {"query": "q2", "gold": ["x"]})]) == (default, 1)  # gold aside
