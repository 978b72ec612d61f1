"""A memory written by an agentroute older than durable batches (schema 0001: `run` tasks without a
batch) upgrades, and ``run --resume`` of the same input (more lines since) does not pay again for
the queries those tasks finished: they are taken into the batch as finished, with their tasks, and
only the rest call the provider (before: every line ran again). A query whose old task failed, was
left running, or asked something else (its text, its metadata, another graph) runs — on SQLite and
PostgreSQL, as a user runs the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.fixtures_old_memory import json_param, memory_at
from tests.test_batch_server import CALL_USD, GRAPH_PY, StubOpenAIServer, pool_yaml

#: Tasks as the releases before migration 0002 stored a `run` of graph.py (graph "one"): the line's
#: metadata with its query_id added, no batch, no process (observed from a run of commit f70252c).
#: query_id → (query, graph, status, meta beside query_id).
OLD_TASKS = {
    "q0": ("question 0", "one", "done", {}),
    "q1": ("question 1", "one", "done", {"k": 1}),
    "q2": ("question 2", "one", "budget_exhausted", {}),
    "q3": ("question 3", "one", "failed", {}),  # runs
    "q4": ("question 4", "one", "running", {}),  # left running by a kill: runs
    "q5": ("question 5 (another text)", "one", "done", {}),  # the same id, another query: runs
    "q6": ("question 6", "one", "done", {"k": 0}),  # other metadata: runs
    "q7": ("question 7", "qa", "done", {}),  # another graph: runs
}
TAKEN = ["q0", "q1", "q2"]
LINES = 10  # q0 … q9: q8 and q9 are new lines


def _old_memory(url: str) -> None:
    with memory_at(url, "0001") as conn:
        conn.execute(sa.text("INSERT INTO tasks (id, query, graph, status, answer, cost_usd, meta, created_at) VALUES "
                             f"(:id, :query, :graph, :status, 'stub answer', 3e-05, {json_param(conn, 'meta')}, CURRENT_TIMESTAMP)"),
                     [{"id": f"old-{qid}", "query": query, "graph": graph, "status": status,
                       "meta": json.dumps({**extra, "query_id": qid})}
                      for qid, (query, graph, status, extra) in OLD_TASKS.items()])  # fmt: skip


def _line(i: int) -> dict[str, object]:
    line: dict[str, object] = {"query": f"question {i}", "query_id": f"q{i}"}
    return line | ({"metadata": {"k": i}} if i % 2 else {})


def test_resume_after_the_upgrade_takes_what_the_old_run_finished(memory_url: str, tmp_path: Path) -> None:  # noqa: F811
    _old_memory(memory_url)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(_line(i)) + "\n" for i in range(LINES)))
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    with StubOpenAIServer() as server:
        (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
        ran = subprocess.run(
            [sys.executable, "-m", "agentroute", "run", "graph.py", "--input", "in.jsonl", "--pool", "pool.yaml",
             "--memory", memory_url, "--resume", "--out", "out.jsonl"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    asked = sorted(a["prompt"] for a in server.answered)
    assert len(asked) == LINES - len(TAKEN), asked  # before: all 10 lines paid again
    assert not any(f"question {qid[1:]}" in asked for qid in TAKEN)
    assert "3 queries of this input done by an agentroute older than durable batches" in " ".join(
        ran.stdout.split()
    )
    lines = {
        line["query_id"]: line for line in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    }
    assert sorted(lines) == [f"q{i}" for i in range(LINES)]  # one line per query, the taken ones too
    assert {qid: lines[qid]["task_id"] for qid in TAKEN} == {qid: f"old-{qid}" for qid in TAKEN}
    assert all(not lines[f"q{i}"]["task_id"].startswith("old-") for i in range(3, LINES))
    spent = sum(line["cost_usd"] for qid, line in lines.items() if qid not in TAKEN)
    assert abs(spent - (LINES - len(TAKEN)) * CALL_USD) < 1e-12
