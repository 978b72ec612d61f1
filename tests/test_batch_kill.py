"""`agentroute run` killed mid-batch (kill -9, SIGTERM) against a loopback OpenAI-compatible server, then resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.test_batch_server import CALL_USD, GRAPH_PY, StubOpenAIServer, pool_yaml

AGENTROUTE = [sys.executable, "-c", "from agentroute.cli import main; main()"]
CONCURRENCY = 4


def _setup(tmp_path: Path, url: str, n: int) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("pool.yaml", "graph.py", "in.jsonl", "out.jsonl")}
    paths["pool.yaml"].write_text(pool_yaml(url))
    paths["graph.py"].write_text(GRAPH_PY)
    paths["in.jsonl"].write_text("".join(json.dumps({"query": f"question number {i}?", "query_id": f"id{i}"}) + "\n" for i in range(n)))
    return paths


def _command(paths: dict[str, Path], memory: str, *extra: str) -> list[str]:
    return [
        *AGENTROUTE, "run", str(paths["graph.py"]), "--input", str(paths["in.jsonl"]), "--pool", str(paths["pool.yaml"]),
        "--memory", memory, "--out", str(paths["out.jsonl"]), "--concurrency", str(CONCURRENCY), "--resume", *extra,
    ]  # fmt: skip


def _start(paths: dict[str, Path], memory: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen(_command(paths, memory, *extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"agentroute run ended early ({proc.returncode}):\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.02)
    pytest.fail(f"no {n} lines in {path} after {timeout}s")


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"agentroute run ended early ({proc.returncode})")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready after {timeout}s")
        time.sleep(0.02)


def _wait_for_a_running_task(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until the memory holds a ``running`` task row (a task in flight whose row is committed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(t["status"] == "running" for t in _memory_state(url)["tasks"]):
            return
        if proc.poll() is not None:
            pytest.fail(f"agentroute run ended early ({proc.returncode})")
        time.sleep(0.01)
    pytest.fail("no running task in the memory within the timeout")


def _memory_state(url: str) -> dict[str, list[dict]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tasks = [dict(r) for r in conn.execute(sa.text("SELECT id, status, cost_usd, meta FROM tasks")).mappings()]
            steps = [dict(r) for r in conn.execute(sa.text("SELECT id, task_id, cost_usd, status FROM steps")).mappings()]
            items = [dict(r) for r in conn.execute(sa.text("SELECT query_id, status, task_id FROM batch_items")).mappings()]
    finally:
        engine.dispose()
    for task in tasks:
        if isinstance(task["meta"], str):
            task["meta"] = json.loads(task["meta"])
    return {"tasks": tasks, "steps": steps, "items": items}


def _check_exactly_once(state: dict[str, list[dict]], out: Path, n: int) -> None:
    tasks, steps = state["tasks"], state["steps"]
    done = Counter(t["meta"]["query_id"] for t in tasks if t["status"] == "done")
    assert len(done) == n and set(done.values()) == {1}, "every query done exactly once"
    assert not [t for t in tasks if t["status"] == "running"], "no task left running"
    task_ids = {t["id"] for t in tasks}
    assert {s["task_id"] for s in steps} <= task_ids, "no step without its task"
    by_task = Counter()
    for s in steps:
        by_task[s["task_id"]] += s["cost_usd"]
    for t in tasks:  # each task's recorded cost is the sum of its recorded steps, across the crash
        if t["meta"].get("agentroute_missing_steps"):  # a step the memory refused (a full disk): marked
            assert t["status"] == "failed" and t["cost_usd"] >= by_task.get(t["id"], 0.0) - 1e-12, t  # billed, kept
            continue
        assert t["cost_usd"] == pytest.approx(by_task.get(t["id"], 0.0), abs=1e-12), t
    assert all(i["status"] == "done" for i in state["items"])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert Counter(line["query_id"] for line in lines if line["status"] == "done") == Counter({f"id{i}": 1 for i in range(n)})
    assert all(line["query"].startswith("question number") for line in lines)


def _settled_count(server: StubOpenAIServer, quiet_s: float = 0.5) -> int:
    """The server's answered count once it has not moved for ``quiet_s`` (its in-flight requests done)."""
    count, since = len(server.answered), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        if len(server.answered) != count:
            count, since = len(server.answered), time.monotonic()
    return count


def test_kill_9_mid_batch_then_resume_runs_each_query_once_and_loses_no_step(tmp_path):
    n = 60
    memory = f"sqlite:///{tmp_path}/memory.db"
    with StubOpenAIServer(delay_s=0.05) as server:
        paths = _setup(tmp_path, server.url, n)
        proc = _start(paths, memory)
        _wait_for_lines(paths["out.jsonl"], 12, proc)
        _wait_for_a_running_task(memory, proc)  # the memory commits in batches under load: kill when it shows one
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        answered_at_kill = _settled_count(server)  # requests already received finish after the kill
        crashed = _memory_state(memory)
        assert [t for t in crashed["tasks"] if t["status"] == "running"], "the kill left tasks running (the case to reconcile)"
        finished_before = {i["query_id"] for i in crashed["items"] if i["status"] == "done"}
        steps_before = {s["id"] for s in crashed["steps"]}
        spend_before = sum(s["cost_usd"] for s in crashed["steps"])

        resumed = _start(paths, memory)
        output, _ = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, output
        assert "reconciled 1 dead worker" in output
        final = _memory_state(memory)
    _check_exactly_once(final, paths["out.jsonl"], n)
    # nothing finished before the crash ran again; every step stored before it is still there
    rerun = {t["meta"]["query_id"] for t in final["tasks"] if t["meta"]["agentroute_batch"]["worker"] != crashed["tasks"][0]["meta"]["agentroute_batch"]["worker"]}
    assert not rerun & finished_before
    assert steps_before <= {s["id"] for s in final["steps"]}
    interrupted = [t for t in final["tasks"] if t["status"] == "interrupted"]
    assert interrupted and all(t["meta"]["agentroute_batch"]["worker"] == crashed["tasks"][0]["meta"]["agentroute_batch"]["worker"] for t in interrupted)
    # spend is continuous: the memory's total is what was stored before the crash, plus the calls in flight
    # at the kill (at most one per slot: stored by the resume's reconcile as failed steps at their worst
    # case), plus what the resume paid
    spend_after = sum(s["cost_usd"] for s in final["steps"])
    new_steps = [s for s in final["steps"] if s["id"] not in steps_before]
    settling = [s for s in new_steps if s["status"] == "failed"]
    resumed_steps = [s for s in new_steps if s["status"] != "failed"]
    assert spend_after == pytest.approx(spend_before + sum(s["cost_usd"] for s in new_steps))
    billed = len(server.answered)
    assert billed - answered_at_kill == len(resumed_steps)  # every call of the resumed run is recorded
    assert 0 <= answered_at_kill - len(steps_before) <= len(settling) <= CONCURRENCY  # each billed call counted
    assert all(s["cost_usd"] >= CALL_USD for s in settling)
    assert spend_after == pytest.approx((len(final["steps"]) - len(settling)) * CALL_USD + sum(s["cost_usd"] for s in settling))


def test_sigterm_finishes_tasks_in_flight_and_out_holds_every_finished_task(tmp_path):
    n = 40
    memory = f"sqlite:///{tmp_path}/memory.db"
    with StubOpenAIServer(delay_s=0.1) as server:
        paths = _setup(tmp_path, server.url, n)
        proc = _start(paths, memory, "--grace-s", "20")
        _wait_for_lines(paths["out.jsonl"], 6, proc)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, output
        assert "stopped by SIGTERM" in output and "--resume" in output
        state = _memory_state(memory)
        assert not [t for t in state["tasks"] if t["status"] in ("running", "interrupted")]  # in flight: finished
        done = {i["query_id"] for i in state["items"] if i["status"] == "done"}
        assert 6 <= len(done) < n
        lines = [json.loads(line) for line in paths["out.jsonl"].read_text().splitlines()]
        assert {line["query_id"] for line in lines} == done and len(lines) == len(done)
        assert len(server.answered) == len(state["steps"])  # nothing billed unrecorded

        resumed = _start(paths, memory)
        output, _ = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, output
        final = _memory_state(memory)
    _check_exactly_once(final, paths["out.jsonl"], n)
    assert len(server.answered) == n


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_with_no_grace_marks_tasks_in_flight_interrupted_with_their_steps_cost(tmp_path, sig):
    n = 12
    memory = f"sqlite:///{tmp_path}/memory.db"
    # calls after the first round wait at the server: the signal lands with calls surely in flight,
    # however loaded the machine (was: 0.3 s calls, so a slow poll could see the batch end first)
    with StubOpenAIServer(hold_after=CONCURRENCY) as server:
        paths = _setup(tmp_path, server.url, n)
        proc = _start(paths, memory, "--grace-s", "0")
        _wait_for_lines(paths["out.jsonl"], 1, proc)
        _wait_until(lambda: server.held >= 1, proc)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, output
        state = _memory_state(memory)
        assert not [t for t in state["tasks"] if t["status"] == "running"]
        interrupted = [t for t in state["tasks"] if t["status"] == "interrupted"]
        assert interrupted and all(f"interrupted ({sig.name})" in t["meta"]["error"] for t in interrupted)
        step_cost = Counter()
        for step in state["steps"]:
            step_cost[step["task_id"]] += step["cost_usd"]
        assert all(t["cost_usd"] == pytest.approx(step_cost[t["id"]]) for t in interrupted)
        assert {i["status"] for i in state["items"]} <= {"done", "interrupted", "pending"}

        ended, cut = _printed_cost(output)
        assert ended == pytest.approx(sum(t["cost_usd"] for t in state["tasks"] if t["status"] == "done"), abs=1e-6)
        assert cut == pytest.approx(sum(t["cost_usd"] for t in interrupted), abs=1e-6)

        server.release.set()
        resumed = _start(paths, memory)
        output, _ = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, output
        final = _memory_state(memory)
    _check_exactly_once(final, paths["out.jsonl"], n)
    assert len(server.answered) >= n
    # the two runs' printed costs add up to what the memory holds: the interrupted tasks counted once
    assert ended + _printed_cost(output)[0] == pytest.approx(sum(t["cost_usd"] for t in final["tasks"]), abs=2e-6)


def _printed_cost(output: str) -> tuple[float, float]:
    """The run's printed cost of the queries it ended, and of those it left interrupted."""
    found = re.search(r"cost of the queries ended here \$([\d.]+)(?: \(\+\$([\d.]+) in the interrupted ones)?", output)
    assert found, output
    return float(found[1]), float(found[2] or 0.0)


def test_resume_after_kill_9_of_a_run_started_without_resume_continues_that_run(tmp_path):
    """README: `agentroute run qa --input q.jsonl` then, after a crash, `… --resume --out out.jsonl`
    ("continue after a crash: no query twice"). The first run's batch is a fresh one (not the
    input's default batch): `--resume` continues it instead of starting everything again."""
    n = 40
    memory = f"sqlite:///{tmp_path}/memory.db"
    with StubOpenAIServer(delay_s=0.05) as server:
        paths = _setup(tmp_path, server.url, n)
        first = _command(paths, memory)
        first.remove("--resume")
        proc = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
        _wait_for_lines(paths["out.jsonl"], 8, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        finished_before = {i["query_id"] for i in _memory_state(memory)["items"] if i["status"] == "done"}
        resumed = _start(paths, memory)
        output, _ = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, output
        assert "continuing batch" in output and "reconciled 1 dead worker" in output
        final = _memory_state(memory)
    _check_exactly_once(final, paths["out.jsonl"], n)
    assert {i["query_id"] for i in final["items"]} == {f"id{i}" for i in range(n)}  # one batch, not two
    crashed_worker = next(t for t in final["tasks"] if t["meta"]["query_id"] in finished_before)["meta"]["agentroute_batch"]["worker"]
    rerun = {t["meta"]["query_id"] for t in final["tasks"] if t["meta"]["agentroute_batch"]["worker"] != crashed_worker}
    assert finished_before and not rerun & finished_before
