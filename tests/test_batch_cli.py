"""`agentroute run` as a user runs it: per-task failures, exit codes, --out lines, --resume, bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from agentroute.batch import BatchReport, BatchRunner, content_query_id, read_jsonl_queries
from agentroute.cli import app
from agentroute.graph import AgentGraph
from agentroute.memory import BatchQueue, open_memory
from agentroute.pool import ModelPool
from agentroute.routers.baselines import CheapestRouter
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml

runner = CliRunner()


@pytest.fixture(scope="module")
def server():
    with StubOpenAIServer() as stub:
        yield stub


@pytest.fixture
def files(tmp_path: Path, server: StubOpenAIServer) -> dict[str, Path]:
    paths = {"pool": tmp_path / "pool.yaml", "graph": tmp_path / "graph.py", "out": tmp_path / "out.jsonl"}
    paths["pool"].write_text(pool_yaml(server.url))
    paths["graph"].write_text(GRAPH_PY)
    return paths


def _input(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _run(files: dict[str, Path], input: Path, memory: str, *extra: str):
    return runner.invoke(app, [
        "run", str(files["graph"]), "--input", str(input), "--pool", str(files["pool"]), "--memory", memory,
        "--out", str(files["out"]), *extra,
    ])  # fmt: skip


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_out_lines_carry_query_and_query_id_generated_from_content_when_missing(tmp_path, files):
    path = _input(tmp_path, [{"query": "What is one?", "query_id": "given-1"}, {"query": "What is two?"}, "What is three?"])
    result = _run(files, path, f"sqlite:///{tmp_path}/m.db")
    assert result.exit_code == 0, result.output
    lines = {line["query"]: line for line in _lines(files["out"])}
    assert lines["What is one?"]["query_id"] == "given-1"
    assert lines["What is two?"]["query_id"] == content_query_id({"query": "What is two?"})
    assert lines["What is three?"]["query_id"] == content_query_id({"query": "What is three?"})
    assert all(line["status"] == "done" and line["answer"] == "stub answer" and line["steps"] for line in lines.values())


def test_a_batch_in_which_every_task_failed_exits_1_with_the_count(tmp_path, files):
    files["pool"].write_text(pool_yaml("http://127.0.0.1:9/v1"))  # nothing listens on the discard port
    path = _input(tmp_path, ["one?", "two?", "three?"])
    result = _run(files, path, f"sqlite:///{tmp_path}/m.db", "--budget-usd", "1")
    assert result.exit_code == 1, result.output
    assert "3 failed" in result.output
    lines = _lines(files["out"])
    assert [line["status"] for line in lines] == ["failed"] * 3 and all(line["error"] for line in lines)


def test_metadata_that_is_not_an_object_fails_that_task_only(tmp_path, files):
    path = _input(tmp_path, [{"query": "fine?"}, {"query": "odd?", "metadata": [1, 2]}, {"query": "also fine?", "metadata": {"k": 1}}])
    memory = f"sqlite:///{tmp_path}/m.db"
    result = _run(files, path, memory)
    assert result.exit_code == 1 and "1 failed" in result.output
    lines = {line["query"]: line for line in _lines(files["out"])}
    assert lines["odd?"]["status"] == "failed" and "metadata must be a JSON object (got list)" in lines["odd?"]["error"]
    assert lines["fine?"]["status"] == lines["also fine?"]["status"] == "done"
    with open_memory(memory) as store:
        task = store.get_task(lines["odd?"]["task_id"])
        assert task is not None and task.task.status == "failed" and "metadata" in task.task.metadata["error"]


def test_nul_and_lone_surrogate_queries_are_stored_escaped_and_the_batch_goes_on(tmp_path, files, memory_url):  # noqa: F811
    path = tmp_path / "in.jsonl"
    path.write_text('{"query": "nul \\u0000 inside", "query_id": "nul"}\n{"query": "lone \\ud800", "query_id": "sur"}\n"plain?"\n')
    result = _run(files, path, memory_url, "--budget-usd", "1")
    assert result.exit_code in (0, 1), result.output
    lines = {line["query_id"]: line for line in _lines(files["out"])}
    assert lines["nul"]["query"] == "nul \x00 inside" and lines["sur"]["query"] == "lone \ud800"  # --out keeps the query
    with open_memory(memory_url) as store:
        for qid, stored in (("nul", "nul \\x00 inside"), ("sur", "lone \\ud800")):
            task = store.get_task(lines[qid]["task_id"])
            assert task is not None and task.task.query == stored and task.task.metadata["agentroute_escaped"] is True
            assert task.task.status in ("done", "failed")
        assert store.stats()["tasks"].get("running", 0) == 0
        with store.engine.connect() as conn:  # no step without its task
            orphans = conn.execute(sa.text("SELECT count(*) FROM steps WHERE task_id NOT IN (SELECT id FROM tasks)")).scalar_one()
        assert orphans == 0
    assert lines[content_query_id({"query": "plain?"})]["status"] == "done"


def test_resume_skips_queries_already_done_and_a_plain_rerun_says_so(tmp_path, files, server):
    path = _input(tmp_path, [f"question {i}?" for i in range(5)])
    memory = f"sqlite:///{tmp_path}/m.db"
    assert _run(files, path, memory, "--resume").exit_code == 0
    calls = len(server.answered)
    again = _run(files, path, memory, "--resume")
    assert again.exit_code == 0, again.output
    assert len(server.answered) == calls and "0 tasks" in again.output
    assert len(_lines(files["out"])) == 5  # appended to, not truncated, on resume
    fresh = _run(files, path, memory)
    assert fresh.exit_code == 0 and "already done" in fresh.output and "--resume" in fresh.output
    assert len(server.answered) == calls + 5


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "is a directory"), (b"\x00\x01\x02binary", "binary input"), (b"not json\n[1]\n", "no valid queries")],
)
def test_bad_input_exits_2(tmp_path, files, content, message):
    path = tmp_path if content is None else tmp_path / "in.jsonl"
    if content is not None:
        path.write_bytes(content)
    result = _run(files, path, f"sqlite:///{tmp_path}/m.db")
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize(
    ("out", "message"),
    [(".", "is a directory"), ("in.jsonl/out.jsonl", "in.jsonl is a file, not a directory")],
)
def test_an_out_that_is_a_directory_or_under_a_file_exits_2_before_anything_runs(tmp_path, files, server, out, message):
    """`agentroute run qa --input q.jsonl --out DIR` was a traceback (IsADirectoryError) with exit 1,
    after the batch had been added and claimed. (A missing folder is created: test_cli_out_folders_a232.py.)"""
    files = {**files, "out": tmp_path / out}
    calls = len(server.answered)
    result = _run(files, _input(tmp_path, [{"query": "q?"}]), f"sqlite:///{tmp_path}/m.db")
    assert result.exit_code == 2 and message in " ".join(result.output.split()) and "--out" in result.output
    assert len(server.answered) == calls and not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("spec", ["bogus", "mysql://x/y"])
def test_a_checkpointer_that_is_no_url_exits_2_naming_the_forms(tmp_path, files, spec):
    """`--checkpointer bogus` was sqlalchemy's ArgumentError traceback with exit 1."""
    result = _run(files, _input(tmp_path, [{"query": "q?"}]), f"sqlite:///{tmp_path}/m.db", "--checkpointer", spec)
    assert result.exit_code == 2 and "expected `memory`, postgresql://… or sqlite:///PATH" in " ".join(result.output.split())


def test_joining_an_unknown_batch_exits_2(tmp_path, files):
    result = runner.invoke(app, ["run", str(files["graph"]), "--resume", "--batch", "nope", "--pool", str(files["pool"]),
                                 "--memory", f"sqlite:///{tmp_path}/m.db"])  # fmt: skip
    assert result.exit_code == 2 and "not in the memory" in result.output


def test_run_web_hands_over_to_the_web_runner_with_the_shared_options(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    def run_web(args, **options):
        calls.append((args, options))
        return 7

    monkeypatch.setitem(sys.modules, "agentroute.cli.web_cmd", types.SimpleNamespace(run_web=run_web))
    memory = f"sqlite:///{tmp_path}/m.db"
    result = runner.invoke(app, ["run", "web", "--memory", memory, "--concurrency", "3", "--budget-usd", "0.5"])
    assert result.exit_code == 7, result.output
    given = {"memory": memory, "concurrency": 3, "budget_usd": 0.5}  # what the command line set, for --out, --resume …
    assert calls == [([], {"router": "cascade", "pool": None, "budget_usd": 0.5, "memory": memory, "concurrency": 3, "given": given})]


class RaisingRouter(CheapestRouter):
    """Raises on one query: the dispatcher or the batch must end that task, never the batch."""

    name = "raising"

    def route(self, ctx):
        if "boom" in ctx.query:
            raise RuntimeError("router exploded")
        return super().route(ctx)


def _raising_node(state, ctx):
    if "kaboom" in state.get("query", ""):
        raise ValueError("node exploded")
    return {}


def test_a_router_or_node_that_raises_on_one_task_ends_that_task_not_the_batch(tmp_path, server):
    pool = tmp_path / "pool.yaml"
    pool.write_text(pool_yaml(server.url))
    graph = (
        AgentGraph("raising").add_node("check", _raising_node).add_role("executor", prompt="Answer.").add_edge("check", "executor")
    )
    memory = open_memory(f"sqlite:///{tmp_path}/m.db")
    compiled = graph.compile(pool=ModelPool.load(str(pool)), router=RaisingRouter(), memory=memory)
    path = _input(tmp_path, ["fine one?", "boom here?", "kaboom here?", "fine two?"])
    items, _ = read_jsonl_queries(path)
    async def run() -> BatchReport:
        try:
            return await BatchRunner(compiled, memory, batch_id="b", concurrency=2, out=tmp_path / "o.jsonl").run(items)
        finally:
            await compiled.dispatcher.pool.aclose()  # its clients' connections, as `agentroute run` closes them

    try:
        report = asyncio.run(run())
    finally:
        memory.close()
    by_query = {r.query: r for r in report.results}
    assert len(by_query) == 4 and by_query["fine one?"].status == by_query["fine two?"].status == "done"
    assert by_query["kaboom here?"].status == "failed" and "ValueError: node exploded" in (by_query["kaboom here?"].error or "")
    assert by_query["boom here?"].status in ("done", "failed")  # the dispatcher may route around a raising router
    assert report.counts.get("running", 0) == 0 and sum(report.counts.values()) == 4
    assert {line["query"] for line in _lines(tmp_path / "o.jsonl")} == set(by_query)


def test_cancelling_a_batch_marks_its_tasks_in_flight_interrupted_and_claims_nothing_more(tmp_path):
    with StubOpenAIServer(delay_s=1.0) as slow:
        pool = tmp_path / "pool.yaml"
        pool.write_text(pool_yaml(slow.url))
        memory = open_memory(f"sqlite:///{tmp_path}/m.db")
        compiled = AgentGraph("one").add_role("executor", prompt="Answer.").compile(
            pool=ModelPool.load(str(pool)), router=CheapestRouter(), memory=memory
        )
        items, _ = read_jsonl_queries(_input(tmp_path, [f"q{i}?" for i in range(10)]))
        runner_ = BatchRunner(compiled, memory, batch_id="b", concurrency=2)

        async def main():
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(runner_.run(items), timeout=0.5)

        try:
            asyncio.run(main())
            counts = runner_.queue.counts()
            stats = memory.stats()["tasks"]
        finally:
            memory.close()
    assert counts == {"interrupted": 2, "pending": 8}
    assert stats == {"interrupted": 2}


def test_a_worker_joins_a_stored_batch_by_name_without_the_input(tmp_path, files):
    memory = f"sqlite:///{tmp_path}/m.db"
    with open_memory(memory) as store:
        BatchQueue(store, "nightly").add([(f"n{i}", {"query": f"stored question {i}?"}) for i in range(3)])
    result = runner.invoke(app, ["run", str(files["graph"]), "--resume", "--batch", "nightly", "--pool", str(files["pool"]),
                                 "--memory", memory, "--out", str(files["out"])])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(line["query_id"] for line in _lines(files["out"])) == ["n0", "n1", "n2"]
    again = runner.invoke(app, ["run", str(files["graph"]), "--batch", "nightly", "--pool", str(files["pool"]),
                                "--memory", memory, "--input", str(_input(tmp_path, ["x?"]))])  # fmt: skip
    assert again.exit_code == 2 and "pass --resume" in again.output


def test_a_sqlite_checkpointer_gives_each_task_a_checkpointed_thread(tmp_path, files):
    path = _input(tmp_path, ["first?", "second?"])
    checkpoints = tmp_path / "checkpoints.db"
    result = _run(files, path, f"sqlite:///{tmp_path}/m.db", "--checkpointer", f"sqlite:///{checkpoints}")
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(f"sqlite:///{checkpoints}")
    with engine.connect() as conn:
        threads = set(conn.execute(sa.text("SELECT DISTINCT thread_id FROM checkpoints")).scalars())
    engine.dispose()
    assert threads == {line["task_id"] for line in _lines(files["out"])}
    bad = _run(files, path, f"sqlite:///{tmp_path}/m.db", "--checkpointer", "redis://x")
    assert bad.exit_code == 2 and "--checkpointer" in bad.output
