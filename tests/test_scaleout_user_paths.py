"""The scale-out path as a team that outgrew one machine uses it: worker processes sharing one
PostgreSQL memory, a server restarted under them, bad URLs and hosts that never answer.

Workers are real OS processes (``python -c``) against a real server on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import agentroute
from agentroute.errors import ConfigurationError
from agentroute.memory import SQLMemory
from agentroute.memory.errors import MemoryStoreError
from agentroute.memory.pgserver import PostgresServer, find_bindir
from tests.fixtures_postgres import wait_for_checkpoint

ROOT = Path(agentroute.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """The environment of a worker process: this checkout's agentroute first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _worker(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )  # fmt: skip


# -- bad URLs and hosts that never answer -------------------------------------------------------
@pytest.mark.parametrize("url", ["postgresql://ann:s3cret@127.0.0.1:/memory", "postgresql://ann:s3cret@db:5432x/memory"])
def test_a_port_that_is_not_a_number_is_a_clear_error_that_hides_the_password(url: str) -> None:
    # was: ValueError "invalid literal for int() with base 10: ''" (a traceback from the CLI)
    with pytest.raises(ConfigurationError, match="invalid memory URL") as info:
        SQLMemory(url)
    assert "s3cret" not in str(info.value) and "ann:***@" in str(info.value)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


def test_a_host_that_never_answers_fails_clearly_within_seconds(silent_port: int, monkeypatch) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    started = time.monotonic()
    result: dict[str, BaseException] = {}

    def open_it() -> None:  # in a thread: the old code hung forever and must not hang the suite
        try:
            SQLMemory(f"postgresql://ann:s3cret@127.0.0.1:{silent_port}/memory").close()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            result["error"] = exc

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "opening the memory on a host that never answers hung"
    assert isinstance(result.get("error"), MemoryStoreError) and "timeout" in str(result["error"])
    assert "s3cret" not in str(result["error"])
    assert time.monotonic() - started < 15


# -- a server restarted under a running worker --------------------------------------------------
WRITER = """
import sys, time, json
from agentroute.memory import SQLMemory
from agentroute.types import Agent, AuditEvent, Step, Task
memory = SQLMemory(sys.argv[1], flush_interval_s=0.01)
print("ready", flush=True)
n, stop = 0, False
import threading
threading.Thread(target=lambda: (sys.stdin.readline(), globals().__setitem__("stop", True)), daemon=True).start()
while not stop and n < 5000:
    task = Task(id=f"{sys.argv[2]}-{n}", query="q", graph="g")
    memory.start_task(task)
    for k in range(2):
        memory.record_step(Step(task_id=task.id, index=k, stage="s", agent=Agent(model="m"), cost_usd=0.001))
    memory.record_audit(AuditEvent(task_id=task.id, stage="s", kind="retry"))
    task.status, task.cost_usd = "done", 0.002
    memory.finish_task(task)
    memory.add_feedback(task.id, 1.0)
    n += 1
    time.sleep(0.01)
try:
    memory.close()
    print(json.dumps({"tasks": n}), flush=True)
except Exception as exc:
    print(json.dumps({"tasks": n, "error": f"{type(exc).__name__}: {exc}"[:300]}), flush=True)
"""


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone (it is restarted under its clients)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'agentroute[postgres]'")
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    server = PostgresServer(durable=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_server_restart_under_two_writing_workers_loses_no_write(own_server: PostgresServer) -> None:
    SQLMemory(own_server.url).close()  # the schema, once
    workers = [_worker(WRITER, own_server.url, f"w{k}") for k in range(2)]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready", w.stderr
        time.sleep(0.5)
        own_server.restart(down_s=2.5)  # every open connection is cut; 2.5 s without a server
        time.sleep(0.5)
        reports = []
        for w in workers:
            out, err = w.communicate("stop\n", timeout=60)
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    # was: "MemoryWriteError: … OperationalError: connection refused" at close, those tasks gone
    assert all("error" not in r for r in reports), reports
    total = sum(r["tasks"] for r in reports)
    with SQLMemory(own_server.url) as memory:
        stats = memory.stats()
    assert stats["tasks"] == {"done": total} and stats["steps"] == 2 * total
    assert stats["feedback"] == total and stats["audit_events"] == total


# -- a checkpointed thread: crashed on one worker, resumed on another ---------------------------
GRAPH_WORKER = """
import json, sys, time
from langgraph.checkpoint.postgres import PostgresSaver
from agentroute import AgentGraph, Budget, make_router
import agentroute.memory
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool
memory_url, saver_url, mode, thread, flush_s, hold_s = sys.argv[1:7]

def hold(state, ctx):  # a slow tool between two paid steps
    print("HOLD", flush=True)
    time.sleep(float(hold_s))
    return {}

graph = (AgentGraph("scaleout").add_role("planner", prompt="plan").add_node("hold", hold)
         .add_role("executor", prompt="do").add_edge("planner", "hold").add_edge("hold", "executor"))
memory = SQLMemory(memory_url, flush_interval_s=float(flush_s))
with PostgresSaver.from_conn_string(saver_url) as saver:
    saver.setup()
    app = graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory,
                        budget=Budget(calls=2), checkpointer=saver)
    config = {"configurable": {"thread_id": thread}}
    try:
        result = app.run("q1", query_id="q1", config=config) if mode == "start" else app.resume(config)
    except getattr(agentroute.memory, "TaskBusyError", ()) as exc:  # () on an agentroute without claims
        print(json.dumps({"busy": str(exc)}), flush=True)
        sys.exit(3)
    print(json.dumps({"status": result.status, "calls": result.state["agentroute"]["ledger"]["spent"][2]}), flush=True)
memory.close()
"""


def _crash_on_worker_a(memory_url: str, thread: str, flush_s: str = "0.05") -> str:
    """Worker A runs the thread's planner, then is killed (``kill -9``) in the slow tool."""
    saver_url = memory_url.replace("postgresql+psycopg://", "postgresql://")
    a = _worker(GRAPH_WORKER, memory_url, saver_url, "start", thread, flush_s, "60")
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "HOLD", a.stderr.read() if a.stderr else ""
        wait_for_checkpoint(memory_url, thread, 1)  # the planner's, saved in the background
    finally:
        a.kill()
        a.communicate()
    return saver_url


def _trajectory(memory_url: str):
    with SQLMemory(memory_url) as memory:
        (only,) = memory.trajectories(graph="scaleout", status=None)
        return only


@pytest.fixture
def scaleout_db(postgres_url: str) -> str:
    """A database of this test alone on the session's server (memory and checkpoints)."""
    from agentroute.memory.pgserver import create_database

    pytest.importorskip("langgraph.checkpoint.postgres", reason="pip install 'agentroute[checkpoint]'")
    return create_database(postgres_url, f"scaleout_{os.getpid()}_{time.monotonic_ns()}")


@pytest.mark.postgres
def test_two_workers_resuming_the_same_thread_at_once_spend_its_budget_once(scaleout_db: str) -> None:
    saver_url = _crash_on_worker_a(scaleout_db, "t-twice")
    resumers = [_worker(GRAPH_WORKER, scaleout_db, saver_url, "resume", "t-twice", "0.05", "1.5") for _ in range(2)]
    outs = []
    for r in resumers:
        out, err = r.communicate(timeout=60)
        outs.append((r.returncode, out.strip().splitlines()[-1] if out.strip() else err[-500:]))
    codes = sorted(code for code, _ in outs)
    # was: both resumed it — 3 paid calls on a 2-call budget, the executor step recorded twice
    assert codes == [0, 3], outs
    busy = next(json.loads(line) for code, line in outs if code == 3)
    assert "being run by another worker" in busy["busy"]
    done = next(json.loads(line) for code, line in outs if code == 0)
    assert done == {"status": "done", "calls": 2}
    trajectory = _trajectory(scaleout_db)
    assert [(s.index, s.stage) for s in trajectory.steps] == [(0, "planner"), (1, "executor")]
    assert trajectory.task.status == "done"
    assert trajectory.task.cost_usd == pytest.approx(sum(s.cost_usd for s in trajectory.steps))


@pytest.mark.postgres
def test_a_worker_killed_after_its_checkpoint_leaves_its_paid_step_in_the_memory(scaleout_db: str) -> None:
    # a team that raised flush_interval_s for bigger batches: the planner's step waited in the queue
    saver_url = _crash_on_worker_a(scaleout_db, "t-killed", flush_s="5")
    b = _worker(GRAPH_WORKER, scaleout_db, saver_url, "resume", "t-killed", "5", "0")
    out, err = b.communicate(timeout=60)
    assert b.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"status": "done", "calls": 2}
    trajectory = _trajectory(scaleout_db)
    # was: the planner's step (paid, in the checkpoint's ledger) was never in the memory: steps [1]
    assert [(s.index, s.stage) for s in trajectory.steps] == [(0, "planner"), (1, "executor")]
    assert trajectory.task.cost_usd == pytest.approx(sum(s.cost_usd for s in trajectory.steps))


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["resume", "invoke-none"])
def test_a_first_node_that_paid_then_failed_resumes_with_its_step_charged(scaleout_db: str, how: str) -> None:
    """The thread's only checkpoint is its input (the task request): the first node paid for a
    step, then raised, before any node's checkpoint. Another worker resumes the thread."""
    from langgraph.checkpoint.postgres import PostgresSaver

    from agentroute import AgentGraph, Budget, make_router
    from agentroute.dispatch.run import LIVE
    from tests.helpers import replay_pool

    failures = {"left": 1}

    async def fetch(state, ctx):  # a tool that asks a model, then fails once
        await ctx.dispatcher.step(ctx.run, role="executor", stage="executor", prompt="look up", input="q1")
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the search service went away")
        return {}

    def compiled(memory, saver):
        graph = AgentGraph("scaleout").add_node("fetch", fetch).add_role("executor", prompt="do")
        return graph.add_edge("fetch", "executor").compile(
            pool=replay_pool(), router=make_router("cheapest"), memory=memory, budget=Budget(calls=2), checkpointer=saver
        )

    config = {"configurable": {"thread_id": f"t-first-{how}"}}
    saver_url = scaleout_db.replace("postgresql+psycopg://", "postgresql://")
    with SQLMemory(scaleout_db) as memory, PostgresSaver.from_conn_string(saver_url) as saver:
        saver.setup()
        with pytest.raises(RuntimeError, match="went away"):
            compiled(memory, saver).invoke({"query": "q1", "query_id": "q1"}, config)
        task_id = compiled(memory, saver).get_state(config).values["agentroute"]["task_id"]
        LIVE.drop(task_id)  # worker B: a fresh process knows nothing of the run
        app = compiled(memory, saver)
        # was: resume() "thread holds no started agentroute task"; invoke(None) opened the task
        # again with a fresh ledger: the paid step charged nothing, 3 calls on a 2-call budget
        status = app.resume(config).status if how == "resume" else app.invoke(None, config)["status"]
        got = memory.get_task(task_id)
    assert got is not None
    assert [s.index for s in got.steps] == [0, 1]  # fetch paid twice; the executor found no budget
    assert status == got.task.status == "budget_exhausted"
    assert got.task.cost_usd == pytest.approx(sum(s.cost_usd for s in got.steps))


HITL_WORKER = """
import json, sys
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.types import Command, interrupt
from agentroute import AgentGraph, Budget, make_router
from agentroute.memory import SQLMemory
from tests.helpers import replay_pool
memory_url, saver_url, who = sys.argv[1:4]

def approve(state, ctx):
    interrupt("ok?")
    return {}

graph = (AgentGraph("scaleout").add_role("planner", prompt="plan").add_node("approve", approve)
         .add_role("executor", prompt="do").add_node("approve2", approve).add_role("summarizer", prompt="sum")
         .add_edge("planner", "approve").add_edge("approve", "executor").add_edge("executor", "approve2")
         .add_edge("approve2", "summarizer"))
memory = SQLMemory(memory_url)
with PostgresSaver.from_conn_string(saver_url) as saver:
    saver.setup()
    app = graph.compile(pool=replay_pool(), router=make_router("cheapest"), memory=memory,
                        budget=Budget(calls=5), checkpointer=saver)
    config = {"configurable": {"thread_id": "t-human"}}
    if who == "A":  # opens the task, waits for a human, then takes the human's second answer
        print(app.run("q1", query_id="q1", config=config).status, flush=True)
        sys.stdin.readline()
    result = app.resume(config, command=Command(resume="yes"))
    print(json.dumps({"status": result.status, "calls": result.state["agentroute"]["ledger"]["spent"][2]}), flush=True)
memory.close()
"""


@pytest.mark.postgres
def test_a_human_answering_on_another_worker_between_two_pauses_keeps_the_task_whole(scaleout_db: str) -> None:
    """Stateless workers behind a load balancer: a paused thread's answers land on any worker."""
    saver_url = scaleout_db.replace("postgresql+psycopg://", "postgresql://")
    a = _worker(HITL_WORKER, scaleout_db, saver_url, "A")
    try:
        assert a.stdout is not None and a.stdout.readline().strip() == "running"  # planner ran; paused
        b = _worker(HITL_WORKER, scaleout_db, saver_url, "B")  # the first answer: the executor runs
        out, err = b.communicate(timeout=60)
        assert json.loads(out.strip().splitlines()[-1]) == {"status": "running", "calls": 2}, err[-2000:]
        out, err = a.communicate("go\n", timeout=60)  # the second answer, back on worker A
    finally:
        if a.poll() is None:
            a.kill()
            a.communicate()
    # was: worker A continued from the run it kept in its process, one step behind: 'failed', 1 call
    assert json.loads(out.strip().splitlines()[-1]) == {"status": "done", "calls": 3}, err[-2000:]
    trajectory = _trajectory(scaleout_db)
    assert [(s.index, s.stage) for s in trajectory.steps] == [(0, "planner"), (1, "executor"), (2, "summarizer")]


OPENER = """
import sys, time
from agentroute.memory import SQLMemory
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
SQLMemory(sys.argv[1]).close()
print("open", flush=True)
"""


@pytest.mark.postgres
def test_workers_starting_at_once_on_an_empty_database_migrate_it_once(postgres_url: str) -> None:
    from agentroute.memory.migrate import VERSION_TABLE, head_revision
    from agentroute.memory.pgserver import create_database

    url = create_database(postgres_url, f"scaleout_empty_{os.getpid()}_{time.monotonic_ns()}")
    start = str(time.time() + 2.5)  # after every interpreter has started
    workers = [_worker(OPENER, url, start) for _ in range(3)]
    outs = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err[-1500:] for _, err in outs]
    with SQLMemory(url) as memory, memory.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [head_revision()]


def _restart_under_run(own_server: PostgresServer, tmp_path: Path, n: int, *options: str) -> tuple[int, str, dict[str, Path]]:
    """``agentroute run`` of ``n`` queries on the PostgreSQL memory, the server restarted (down 1 s:
    the run claims items and writes checkpoints all the while) once 8 are done: (exit code, output, paths)."""
    from tests.test_batch_kill import _setup, _start, _wait_for_lines
    from tests.test_batch_server import StubOpenAIServer

    with StubOpenAIServer(delay_s=0.03) as server:
        paths = _setup(tmp_path, server.url, n)
        proc = _start(paths, own_server.url, *options)
        try:
            _wait_for_lines(paths["out.jsonl"], 8, proc)
            own_server.restart(down_s=1.0)
            output, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return proc.returncode, output, paths


@pytest.mark.postgres
def test_a_server_restart_under_agentroute_run_finishes_the_batch(own_server: PostgresServer, tmp_path: Path) -> None:
    from tests.test_batch_kill import _check_exactly_once, _memory_state

    code, output, paths = _restart_under_run(own_server, tmp_path, 40)
    # was: exit 1, "OperationalError … connection refused" from claiming the next items; 50 left pending
    assert code == 0, output[-3000:]
    _check_exactly_once(_memory_state(own_server.url), paths["out.jsonl"], 40)


@pytest.mark.postgres
def test_a_server_restart_under_run_with_the_memory_as_checkpointer_fails_only_the_tasks_in_flight(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    """`agentroute run --checkpointer memory` held one checkpoint connection: after a 2 s restart
    every later task failed writing its checkpoints (51 of 60). The saver now takes pooled,
    checked connections: at most the tasks in flight at the restart fail."""
    import json

    from tests.test_batch_kill import CONCURRENCY, _memory_state

    code, output, paths = _restart_under_run(own_server, tmp_path, 40, "--checkpointer", "memory")
    assert code in (0, 1) and "Traceback" not in output, output[-3000:]
    lines = [json.loads(line) for line in paths["out.jsonl"].read_text().splitlines()]
    failed = [line for line in lines if line["status"] != "done"]
    assert len(lines) == 40 and len(failed) <= 2 * CONCURRENCY, (len(failed), output[-2000:])
    assert not [t for t in _memory_state(own_server.url)["tasks"] if t["status"] == "running"]
