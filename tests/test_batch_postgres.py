"""Scale-out on one machine: two `agentroute run --resume` processes share one batch in one PostgreSQL
memory, with LangGraph's Postgres checkpointer in the same database."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest
import sqlalchemy as sa

from agentroute.memory.pgserver import create_database
from tests.test_batch_kill import _memory_state, _setup, _start, _wait_for_lines
from tests.test_batch_server import StubOpenAIServer

pytestmark = pytest.mark.postgres


def test_two_processes_over_one_input_do_every_query_exactly_once(tmp_path, postgres_url):
    n = 120
    memory = create_database(postgres_url, "agentroute_batch_two")
    with StubOpenAIServer(delay_s=0.03) as server:
        paths = _setup(tmp_path, server.url, n)
        outs = [tmp_path / "out1.jsonl", tmp_path / "out2.jsonl"]
        procs = []
        for out in outs:
            paths["out.jsonl"] = out
            procs.append(_start(paths, memory, "--checkpointer", "memory"))
        outputs = [proc.communicate(timeout=180)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        state = _memory_state(memory)
        billed = Counter(a["prompt"] for a in server.answered)
    done = Counter(t["meta"]["query_id"] for t in state["tasks"] if t["status"] == "done")
    assert len(done) == n and set(done.values()) == {1}
    assert len(state["tasks"]) == n and len(state["steps"]) == n  # no query even started twice
    assert all(count == 1 for count in billed.values()) and len(billed) == n
    per_process = [[json.loads(line)["query_id"] for line in out.read_text().splitlines()] for out in outs]
    assert all(per_process), "both processes took work"
    assert not set(per_process[0]) & set(per_process[1]) and len(per_process[0]) + len(per_process[1]) == n
    workers = {t["meta"]["agentroute_batch"]["worker"] for t in state["tasks"]}
    assert len(workers) == 2
    engine = sa.create_engine(memory)
    with engine.connect() as conn:  # every task ran on a checkpointed thread of its own
        threads = set(conn.execute(sa.text("SELECT DISTINCT thread_id FROM checkpoints")).scalars())
    engine.dispose()
    assert threads == {t["id"] for t in state["tasks"]}


def test_a_killed_worker_is_reconciled_by_the_survivor_joining_later(tmp_path, postgres_url):
    n = 40
    memory = create_database(postgres_url, "agentroute_batch_kill")
    with StubOpenAIServer(delay_s=0.05) as server:
        paths = _setup(tmp_path, server.url, n)
        first = _start(paths, memory)
        _wait_for_lines(paths["out.jsonl"], 8, first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = _start(paths, memory)
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        state = _memory_state(memory)
    done = Counter(t["meta"]["query_id"] for t in state["tasks"] if t["status"] == "done")
    assert len(done) == n and set(done.values()) == {1}
    assert not [t for t in state["tasks"] if t["status"] == "running"]
    assert {s["task_id"] for s in state["steps"]} <= {t["id"] for t in state["tasks"]}

