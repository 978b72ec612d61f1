"""A line fixed after its query failed, resumed with the same ``query_id``: the batch kept the
content stored at its first run, so the resume ran the old line again (and failed again)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.memory import BatchQueue, SQLMemory
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml


def test_a_failed_line_fixed_in_the_input_runs_as_fixed_on_resume(tmp_path: Path) -> None:
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    path = tmp_path / "in.jsonl"

    def run(lines: list[dict]):
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return CliRunner().invoke(app, [
            "run", str(tmp_path / "graph.py"), "--input", str(path), "--pool", str(tmp_path / "pool.yaml"),
            "--memory", f"sqlite:///{tmp_path}/m.db", "--resume",
        ])  # fmt: skip

    with StubOpenAIServer() as server:
        (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
        good = {"query_id": "a", "query": "fine?"}
        first = run([good, {"query_id": "b", "query": "broken?", "metadata": "not an object"}])
        assert first.exit_code == 1, first.output  # b failed
        fixed = run([{**good, "query": "edited after it was done?"}, {"query_id": "b", "query": "fixed?", "metadata": {}}])
        assert fixed.exit_code == 0, fixed.output
        assert [a["prompt"] for a in server.answered][-1].endswith("fixed?")
        assert len(server.answered) == 2  # a, done, is not run again


def test_add_gives_unfinished_items_their_edited_content_and_leaves_finished_ones(memory_url: str) -> None:  # noqa: F811
    with SQLMemory(memory_url) as memory:
        queue = BatchQueue(memory, "b")
        assert queue.add([("q1", {"query": "old 1"}), ("q2", {"query": "old 2"})]) == 2
        queue.join()
        assert [c.query_id for c in queue.claim(1)] == ["q1"]
        with memory.engine.begin() as conn:  # q1 ended done
            conn.exec_driver_sql("UPDATE batch_items SET status = 'done' WHERE query_id = 'q1'")
        assert queue.add([("q1", {"query": "new 1"}), ("q2", {"query": "new 2"}), ("q3", {"query": "3"})]) == 1
        with memory.engine.connect() as conn:
            items = {q: json.loads(i) for q, i in conn.execute(sa.text("SELECT query_id, item FROM batch_items"))}
        assert items == {"q1": {"query": "old 1"}, "q2": {"query": "new 2"}, "q3": {"query": "3"}}
        assert [c.item["query"] for c in queue.claim(2)] == ["new 2", "3"]
        queue.leave()


def test_a_line_edited_after_its_worker_was_killed_runs_as_edited(tmp_path: Path) -> None:
    """A worker killed (``kill -9``) while running ``b``; the line is fixed and the input resumed:
    the batch edited only items not running, then found ``b`` interrupted and ran its old line."""
    from agentroute.batch import default_batch_id

    url = f"sqlite:///{tmp_path}/m.db"
    with SQLMemory(url) as memory:
        dead = BatchQueue(memory, default_batch_id("one", [{"query_id": "b"}]), worker_id="killed")
        dead.pid = 2**22 + 12345  # above Linux's pid_max default: never a live process
        dead.join()
        dead.add([("b", {"query": "old?"})])
        assert [c.query_id for c in dead.claim(1)] == ["b"]
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    (tmp_path / "in.jsonl").write_text(json.dumps({"query_id": "b", "query": "fixed?"}) + "\n")
    with StubOpenAIServer() as server:
        (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
        resumed = CliRunner().invoke(app, [
            "run", str(tmp_path / "graph.py"), "--input", str(tmp_path / "in.jsonl"), "--pool", str(tmp_path / "pool.yaml"),
            "--memory", url, "--resume",
        ])  # fmt: skip
        assert resumed.exit_code == 0, resumed.output
        assert [a["prompt"].rsplit("\n", 1)[-1] for a in server.answered] == ["fixed?"]
