"""Conformance suite of the SQL memory, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st

from agentroute.budget import Attempt, Budget, Cost
from agentroute.errors import ConfigurationError
from agentroute.memory import MemoryStoreError, MemoryWriteError, SQLMemory, open_memory
from agentroute.memory import queries as memory_queries
from agentroute.memory.codec import storable
from agentroute.memory.export import PARQUET_COLUMNS
from agentroute.memory.migrate import VERSION_TABLE, alembic_config, current_revision, head_revision
from agentroute.memory.pgserver import create_database
from agentroute.memory.tables import include_object, metadata
from agentroute.types import Agent, AuditEvent, Decision, Step, Task, Trajectory
from tests import fixtures_memory
from tests.fixtures_memory import BACKENDS

T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
SMALL = Agent(role="executor", model="small", strategy="direct")
LARGE = Agent(role="planner", model="large", strategy="cot")
TABLES = ("tasks", "steps", "feedback", "audit_events", "router_state", "batch_items", "batch_workers")


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_test_db(postgres_url: str) -> Iterator[tuple[str, sa.Engine]]:
    """One migrated database for the session; each test starts from truncated tables."""
    url = create_database(postgres_url, "agentroute_test")
    SQLMemory(url).close()
    engine = sa.create_engine(url)
    yield url, engine
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def memory_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A memory's URL: SQLite, then the session's PostgreSQL database truncated (faster than a new one)."""
    if request.param == "sqlite":
        return fixtures_memory.fresh_url(request, tmp_path)
    url, engine = request.getfixturevalue("pg_test_db")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    return url


@pytest.fixture
def store(memory_url: str) -> Iterator[SQLMemory]:
    memory = SQLMemory(memory_url, batch_size=64, flush_interval_s=0.005)
    yield memory
    try:
        memory.close()
    except MemoryWriteError:
        pass


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no schema yet)."""
    return fixtures_memory.fresh_url(request, tmp_path)


# -- helpers ----------------------------------------------------------------------------------
def make_task(i: int = 0, **fields: object) -> Task:
    defaults: dict[str, object] = {
        "query": f"question {i}?",
        "graph": "qa",
        "created_at": T0 + timedelta(seconds=i),
    }
    return Task(**(defaults | fields))  # type: ignore[arg-type]


def make_step(task: Task, index: int, agent: Agent = SMALL, **fields: object) -> Step:
    decision = Decision(
        agents=[agent, LARGE],
        weights=[0.75, 0.25],
        router="threshold",
        scores={agent.key: 0.8, LARGE.key: 0.3},
        evidence={"threshold": 0.5, "features": [1.0, 2.5]},
        why="cheap agent is good enough",
    )
    defaults: dict[str, object] = {
        "task_id": task.id,
        "index": index,
        "stage": "answer",
        "agent": agent,
        "decision": decision,
        "input": f"input {index}",
        "output": f"output {index}",
        "tokens_in": 10 + index,
        "tokens_out": 5,
        "cost_usd": 0.001 * (index + 1),
        "latency_ms": 12.5,
        "score": 1.0,
        "confidence": 0.9,
        "created_at": task.created_at + timedelta(milliseconds=index),
    }
    return Step(**(defaults | fields))  # type: ignore[arg-type]


def record_task(store: SQLMemory, i: int, n_steps: int = 2, **fields: object) -> tuple[Task, list[Step]]:
    task = make_task(i, **fields)
    store.start_task(task)
    steps = [make_step(task, k) for k in range(n_steps)]
    store.record_steps(steps)
    if task.status == "running":
        task.status = "done"
    task.answer, task.cost_usd = "42", sum(s.cost_usd for s in steps)
    store.finish_task(task)
    return task, steps


# -- round trips ------------------------------------------------------------------------------
def test_task_and_steps_round_trip(store: SQLMemory) -> None:
    task = make_task(
        budget=Budget(usd=0.5, calls=4), task_type="math", metadata={"query_id": "q1", "tags": ["a"]}
    )
    store.start_task(task)
    steps = [make_step(task, 0), make_step(task, 1, LARGE, status="failed", error="timeout", score=None)]
    steps.append(make_step(task, 2, decision=None, confidence=None))
    store.record_steps(steps)
    task.status, task.answer, task.score, task.cost_usd = "done", "42", 1.0, 0.006
    store.finish_task(task)

    got = store.get_task(task.id)
    assert got is not None
    assert got.task.model_dump() == task.model_dump()
    assert [s.model_dump() for s in got.steps] == [s.model_dump() for s in steps]
    assert got.steps[0].decision == steps[0].decision
    assert got.task.created_at.tzinfo is not None
    assert store.get_task("no-such-task") is None


def test_running_task_is_readable_before_it_finishes(store: SQLMemory) -> None:
    task = make_task()
    store.start_task(task)
    store.record_step(make_step(task, 0))
    got = store.get_task(task.id)
    assert got is not None and got.task.status == "running" and len(got.steps) == 1


def test_steps_come_back_ordered_by_index(store: SQLMemory) -> None:
    task = make_task()
    store.start_task(task)
    for index in (2, 0, 3, 1):
        store.record_step(make_step(task, index, created_at=T0 - timedelta(seconds=index)))
    got = store.get_task(task.id)
    assert got is not None and [s.index for s in got.steps] == [0, 1, 2, 3]


def test_audit_events(store: SQLMemory) -> None:
    a, b = make_task(0), make_task(1)
    events = [
        AuditEvent(
            task_id=a.id,
            stage="plan",
            kind="stage_blocked",
            subject="planner",
            detail="not allowed",
            created_at=T0,
        ),
        AuditEvent(
            task_id=b.id, stage="answer", kind="retry", subject="small", created_at=T0 + timedelta(seconds=1)
        ),
        AuditEvent(
            task_id=a.id,
            stage="answer",
            kind="fallback",
            subject="large",
            created_at=T0 + timedelta(seconds=2),
        ),
    ]
    for event in reversed(events):
        store.record_audit(event)
    assert store.audit_events() == events
    assert store.audit_events(a.id) == [events[0], events[2]]
    assert store.audit_events("nobody") == []


def test_feedback_sets_the_task_score(store: SQLMemory) -> None:
    task, _ = record_task(store, 0)
    store.add_feedback(task.id, 0.25, source="grader", comment="partly right")
    store.add_feedback(task.id, 0.5)
    got = store.get_task(task.id)
    assert got is not None and got.task.score == 0.5
    assert store.stats()["feedback"] == 2


def test_router_state(store: SQLMemory) -> None:
    assert store.load_router_state("ant_colony") is None
    state = {"pheromone": [[0.1, 0.9], [0.5, 0.5]], "version": 1, "models": ["small", "large"]}
    store.save_router_state("ant_colony", state)
    assert store.load_router_state("ant_colony") == state
    store.save_router_state("ant_colony", {"version": 2})
    store.save_router_state("other", {"x": None})
    assert store.load_router_state("ant_colony") == {"version": 2}
    assert store.load_router_state("other") == {"x": None}


# -- queries ----------------------------------------------------------------------------------
def test_trajectories_filters_and_order(store: SQLMemory) -> None:
    done_qa, _ = record_task(store, 3, score=1.0)
    done_web, _ = record_task(store, 1, graph="web", score=0.0)
    exhausted, _ = record_task(store, 2, status="budget_exhausted")
    running = make_task(0)
    store.start_task(running)

    default = store.trajectories()
    assert [t.task.id for t in default] == [done_web.id, exhausted.id, done_qa.id]  # oldest first, no running
    assert all(isinstance(t, Trajectory) and len(t.steps) == 2 for t in default)
    assert [t.task.id for t in store.trajectories(graph="qa")] == [exhausted.id, done_qa.id]
    assert [t.task.id for t in store.trajectories(status=["running"])] == [running.id]
    assert [t.task.id for t in store.trajectories(status=["done"], with_score=True)] == [
        done_web.id,
        done_qa.id,
    ]
    assert [t.task.id for t in store.trajectories(since=T0 + timedelta(seconds=2))] == [
        exhausted.id,
        done_qa.id,
    ]
    assert [t.task.id for t in store.trajectories(limit=2)] == [done_web.id, exhausted.id]
    assert store.trajectories(graph="nope") == []


def test_trajectories_page_through_many_tasks(store: SQLMemory) -> None:
    tasks = [record_task(store, i, n_steps=i % 3)[0] for i in range(7)]
    tasks.append(record_task(store, 6, n_steps=1)[0])  # same created_at as task 6: tie broken by id
    store.flush()
    expected = sorted(tasks, key=lambda t: (t.created_at, t.id))
    with store.engine.connect() as conn:
        where = memory_queries.task_filter()
        paged = list(memory_queries.iter_trajectories(conn, where, page=2))
        limited = list(memory_queries.iter_trajectories(conn, where, page=2, limit=5))
    assert [t.task.id for t in paged] == [t.id for t in expected]
    assert [len(t.steps) for t in paged] == [len(t.steps) for t in store.trajectories()]
    assert [t.task.id for t in limited] == [t.id for t in expected[:5]]


def test_stats(store: SQLMemory) -> None:
    assert store.stats()["tasks_total"] == 0
    task, steps = record_task(store, 0, n_steps=3)
    store.start_task(make_task(1))
    store.record_step(make_step(task, 3, LARGE, tokens_in=100, tokens_out=50, cost_usd=0.5))
    store.record_audit(AuditEvent(task_id=task.id, stage="answer", kind="retry"))
    store.add_feedback(task.id, 1.0)
    for n in range(2):  # a call retried once: two provider attempts for one step
        asyncio.run(store.reserve_attempt(Attempt(task.id, 3, n, "executor:large:direct", "answer", Cost(usd=0.5))))
    stats = store.stats()
    assert stats["attempts"] == 2
    assert stats["tasks_total"] == 2
    assert stats["tasks"] == {"done": 1, "running": 1}
    assert stats["steps"] == 4
    assert stats["cost_usd"] == pytest.approx(sum(s.cost_usd for s in steps) + 0.5)
    assert stats["tokens_in"] == sum(s.tokens_in for s in steps) + 100
    assert stats["tokens_out"] == 3 * 5 + 50
    assert stats["models"]["small"]["calls"] == 3
    assert stats["models"]["large"] == {"calls": 1, "cost_usd": pytest.approx(0.5), "tokens": 150}
    assert stats["feedback"] == 1 and stats["audit_events"] == 1


# -- durability, concurrency, failures --------------------------------------------------------
def test_flush_then_reopen_finds_everything(memory_url: str) -> None:
    first = SQLMemory(memory_url, flush_interval_s=10.0)  # nothing commits on the timer
    task, steps = record_task(first, 0, n_steps=5)
    first.record_audit(AuditEvent(task_id=task.id, stage="answer", kind="fallback"))
    first.add_feedback(task.id, 0.75)
    first.save_router_state("r", {"k": 1})
    first.close()
    with pytest.raises(MemoryStoreError, match="closed"):
        first.record_step(steps[0])

    with open_memory(memory_url) as second:
        got = second.get_task(task.id)
        assert got is not None and [s.id for s in got.steps] == [s.id for s in steps]
        assert got.task.status == "done" and got.task.score == 0.75
        assert len(second.audit_events(task.id)) == 1
        assert second.load_router_state("r") == {"k": 1}


def test_a_crash_after_flush_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    script = f"""
import os
from agentroute.memory import SQLMemory
from agentroute.types import Agent, Step, Task
memory = SQLMemory({url!r}, flush_interval_s=60)
task = Task(id="t", query="q")
memory.start_task(task)
memory.record_steps(Step(task_id="t", index=i, stage="s", agent=Agent(model="m")) for i in range(50))
memory.flush()
memory.record_step(Step(task_id="t", index=50, stage="s", agent=Agent(model="m")))  # never flushed
os._exit(1)  # no close, no atexit
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    with SQLMemory(url) as memory:
        got = memory.get_task("t")
        assert got is not None and [s.index for s in got.steps][:50] == list(range(50))


def test_flush_wakes_the_writer_without_waiting_for_the_batch_interval(memory_url: str) -> None:
    with SQLMemory(memory_url, flush_interval_s=30) as memory:
        started = time.perf_counter()
        task, _ = record_task(memory, 0, n_steps=3)
        memory.flush()
        assert time.perf_counter() - started < 5
        assert [s.index for s in memory.get_task(task.id).steps] == [0, 1, 2]


def test_sqlite_batches_span_several_statements_and_upsert_each_task_once(tmp_path: Path) -> None:
    memory = SQLMemory(f"sqlite:///{tmp_path / 'chunks.db'}", batch_size=1000, flush_interval_s=5, prompt_commit=False)
    # a SQLite build that binds at most 45 values a statement: 2 step rows, 3 task rows each
    sa.event.listen(memory.engine, "connect", lambda conn, _: conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 45))
    memory.engine.dispose()
    with memory:
        recorded = [record_task(memory, i, n_steps=3) for i in range(9)]  # start and finish in one batch
        memory.flush()
        assert memory._writer.batches == 1
        for task, steps in recorded:
            got = memory.get_task(task.id)
            assert got is not None and got.task.status == "done" and got.task.answer == "42"
            assert [s.id for s in got.steps] == [s.id for s in steps]
        with memory.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*), count(finished_at) FROM tasks")).one()
        assert tuple(rows) == (9, 9)


def test_the_last_write_of_a_task_in_a_batch_wins(memory_url: str) -> None:
    with SQLMemory(memory_url, batch_size=1000, flush_interval_s=5, prompt_commit=False) as memory:
        task = make_task(0)
        memory.start_task(task)
        task.status, task.answer = "done", "first"
        memory.finish_task(task)
        restarted = task.model_copy(update={"status": "running", "answer": None})
        memory.start_task(restarted)  # resumed under the same id, in the same batch
        memory.flush()
        got = memory.get_task(task.id)
        assert got is not None and got.task.status == "running" and got.task.answer is None
        with memory.engine.connect() as conn:
            finished = conn.execute(sa.text("SELECT finished_at FROM tasks WHERE id = :i"), {"i": task.id}).scalar()
        assert finished is None


def test_a_full_batch_is_committed_before_its_interval(memory_url: str) -> None:
    with SQLMemory(memory_url, batch_size=8, flush_interval_s=30) as memory:
        task = make_task(0)
        memory.start_task(task)
        memory.record_steps(make_step(task, k) for k in range(20))
        deadline = time.monotonic() + 10
        while memory._writer.committed < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert memory._writer.committed >= 16  # two full batches, long before the 30 s interval


def test_flush_commits_for_other_connections(store: SQLMemory) -> None:
    task, _ = record_task(store, 0, n_steps=3)
    store.flush()
    with store.engine.connect() as conn:  # a reader that does not go through the store
        count = conn.execute(
            sa.text("SELECT count(*) FROM steps WHERE task_id = :t"), {"t": task.id}
        ).scalar()
    assert count == 3


def test_concurrent_threads_lose_nothing(store: SQLMemory) -> None:
    def worker(w: int) -> None:
        for i in range(25):
            record_task(store, w * 100 + i, n_steps=8)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.flush()
    stats = store.stats()
    assert stats["tasks_total"] == 200 and stats["steps"] == 1600


async def test_concurrent_asyncio_tasks_lose_nothing(store: SQLMemory) -> None:
    async def run(i: int) -> None:
        task = make_task(i)
        store.start_task(task)
        for k in range(10):
            await asyncio.sleep(0)
            store.record_step(make_step(task, k))
        task.status = "done"
        store.finish_task(task)

    await asyncio.gather(*(run(i) for i in range(60)))
    await store.aflush()
    stats = store.stats()
    assert stats["tasks"] == {"done": 60} and stats["steps"] == 600


def test_failed_writes_are_raised_not_lost(store: SQLMemory, caplog: pytest.LogCaptureFixture) -> None:
    task = make_task()
    store.start_task(task)
    good = [make_step(task, k) for k in range(6)]
    store.record_steps(good[:3])
    store.record_step(good[0].model_copy(update={"index": 99}))  # duplicate id
    store.record_step(object())  # type: ignore[arg-type]  # not a step at all
    store.record_steps(good[3:])
    with pytest.raises(MemoryWriteError, match="2 memory write") as info:
        store.flush()
    assert [kind for kind, _, _ in info.value.failures] == ["step", "step"]
    assert info.value.payloads[0].index == 99
    assert f"1 memory write(s) failed and were not committed (1 step) of task(s) {task.id}; first" in caplog.text  # the error's line
    store.flush()  # reported once
    got = store.get_task(task.id)
    assert got is not None and [s.id for s in got.steps] == [s.id for s in good]


# -- schema -----------------------------------------------------------------------------------
def test_migrations_reach_head_without_drift(fresh_url: str) -> None:
    engine = sa.create_engine(fresh_url)
    try:
        assert current_revision(engine) is None
        SQLMemory(fresh_url).close()
        assert current_revision(engine) == head_revision()
        SQLMemory(fresh_url).close()  # already at head: nothing to do
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True, "include_object": include_object}
            )
            assert compare_metadata(context, metadata) == []
            assert set(TABLES) <= set(sa.inspect(conn).get_table_names())
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert not set(TABLES) & set(sa.inspect(engine).get_table_names())
        with SQLMemory(fresh_url) as memory:
            assert memory.stats()["tasks_total"] == 0
    finally:
        engine.dispose()


def test_bad_urls_are_named() -> None:
    with pytest.raises(ConfigurationError, match="not a url"):
        SQLMemory("not a url")
    with pytest.raises(ConfigurationError, match="mysql://u:\\*\\*\\*@h/db"):
        SQLMemory("mysql://u:secret@h/db")
    with pytest.raises(ConfigurationError, match="batch_size"):
        SQLMemory("sqlite://", batch_size=0)


def test_unreachable_server_is_named() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(
        MemoryStoreError, match=r"cannot open the memory at postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/x"
    ):
        SQLMemory("postgresql://u:secret@127.0.0.1:1/x")


def test_default_url_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with SQLMemory() as memory:
        assert memory.url == "sqlite:///.agentroute/memory.db"
    assert (tmp_path / ".agentroute" / "memory.db").is_file()
    monkeypatch.setenv("AGENTROUTE_MEMORY", f"sqlite:///{tmp_path / 'env.db'}")
    with open_memory() as memory:
        record_task(memory, 0)
    assert (tmp_path / "env.db").is_file()


def test_in_memory_sqlite() -> None:
    with SQLMemory("sqlite://") as memory:
        task, steps = record_task(memory, 0, n_steps=3)
        got = memory.get_task(task.id)
        assert got is not None and len(got.steps) == 3


def test_writing_while_streaming_trajectories(store: SQLMemory) -> None:
    tasks = [record_task(store, i)[0] for i in range(3)]
    for trajectory in store.iter_trajectories():
        store.add_feedback(trajectory.task.id, 0.5)
        store.flush()
    assert [(t.task.id, t.task.score) for t in store.trajectories()] == [(t.id, 0.5) for t in tasks]
    with SQLMemory("sqlite://") as memory:  # one shared connection: must not deadlock either
        record_task(memory, 0)
        for trajectory in memory.iter_trajectories():
            memory.add_feedback(trajectory.task.id, 1.0)
            memory.flush()
        assert memory.stats()["feedback"] == 1


# -- export -----------------------------------------------------------------------------------
def test_export_jsonl(store: SQLMemory, tmp_path: Path) -> None:
    for i in range(3):
        record_task(store, i, n_steps=i)
    path = tmp_path / "out" / "trajectories.jsonl"
    assert store.export_jsonl(path) == 3
    lines = path.read_text().splitlines()
    assert [Trajectory.model_validate_json(line) for line in lines] == store.trajectories()
    assert store.export_jsonl(tmp_path / "qa.jsonl", graph="web") == 0


def test_export_parquet(store: SQLMemory, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    tasks = [record_task(store, i, n_steps=n)[0] for i, n in enumerate([2, 0, 3])]
    path = tmp_path / "steps.parquet"
    assert store.export_parquet(path) == 2 + 1 + 3  # a task without steps keeps one row
    table = pq.read_table(path)
    assert tuple(table.column_names) == PARQUET_COLUMNS
    rows = table.to_pylist()
    assert [r["task_id"] for r in rows] == [tasks[0].id] * 2 + [tasks[1].id] + [tasks[2].id] * 3
    assert [r["step_step_index"] for r in rows] == [0, 1, None, 0, 1, 2]
    first = rows[0]
    assert first["task_query"] == "question 0?" and first["task_status"] == "done"
    assert first["step_model"] == "small" and first["step_tokens_in"] == 10
    assert json.loads(first["step_decision"])["router"] == "threshold"
    assert first["step_created_at"] == T0
    assert store.export_parquet(tmp_path / "one.parquet", limit=1) == 2


def test_ids_are_unique_and_sort_by_creation_time() -> None:
    from agentroute.types import new_id

    burst = [new_id() for _ in range(10_000)]
    assert len(set(burst)) == len(burst) and all(len(i) == 32 and int(i, 16) >= 0 for i in burst)
    time.sleep(0.002)
    later = new_id()
    assert later > max(burst)  # a primary-key index appends them instead of splitting pages


# -- text no database stores as given; steps never without their task --------------------------
UNSTORABLE = "nul \x00 here, lone \ud800 surrogate"


def test_nul_and_lone_surrogates_are_stored_escaped_not_lost(store: SQLMemory) -> None:
    task = make_task(0, query=UNSTORABLE, metadata={"note": "\x00", "k\udc80": ["\ud83d"]}, answer="a\x00")
    store.start_task(task)
    store.record_step(make_step(task, 0, input=UNSTORABLE, output="out \x00", error="e \udfff"))
    store.record_audit(AuditEvent(task_id=task.id, stage="answer", kind="retry", detail="d \x00"))
    task.status = "done"
    store.finish_task(task)
    store.flush()  # nothing lost: no MemoryWriteError
    got = store.get_task(task.id)
    assert got is not None
    assert got.task.query == "nul \\x00 here, lone \\ud800 surrogate" and got.task.answer == "a\\x00"
    assert got.task.metadata["note"] == "\\x00" and got.task.metadata["k\\udc80"] == ["\\ud83d"]
    assert got.task.metadata["agentroute_escaped"] is True
    step = got.steps[0]
    assert (step.input, step.output, step.error) == ("nul \\x00 here, lone \\ud800 surrogate", "out \\x00", "e \\udfff")
    assert store.audit_events(task.id)[0].detail == "d \\x00"
    plain = make_task(1, query="plain \\x00 text")  # text without NUL is stored as given
    store.start_task(plain)
    store.flush()
    assert store.get_task(plain.id).task.query == "plain \\x00 text"  # type: ignore[union-attr]
    assert "agentroute_escaped" not in store.get_task(plain.id).task.metadata  # type: ignore[union-attr]


def _step_task_ids(store: SQLMemory) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT task_id FROM steps")).scalars())


def _task_ids(store: SQLMemory) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id FROM tasks")).scalars())


def test_a_task_that_cannot_be_stored_keeps_its_steps_out_in_this_batch_and_later_ones(store: SQLMemory) -> None:
    bad, good = make_task(0), make_task(1)
    bad_steps = [make_step(bad, 0), make_step(bad, 1)]
    bad.created_at = None  # type: ignore[assignment]  # NOT NULL: the task row is refused
    store.start_task(bad)
    store.record_step(bad_steps[0])
    store.start_task(good)
    store.record_step(make_step(good, 0))
    with pytest.raises(MemoryWriteError) as lost:
        store.flush()
    assert {kind for kind, _, _ in lost.value.failures} == {"start_task", "step"}
    assert _task_ids(store) == {good.id} and _step_task_ids(store) == {good.id}
    store.record_step(bad_steps[1])  # a later batch: still held back, never an orphan step
    with pytest.raises(MemoryWriteError, match="never stored"):
        store.flush()
    assert _step_task_ids(store) == {good.id}


def test_nan_and_infinite_metadata_are_stored_as_strings_on_every_backend(store: SQLMemory) -> None:
    task = make_task(0, metadata={"score": float("nan"), "bounds": [float("inf"), float("-inf"), 1.5]})
    store.start_task(task)
    store.flush()  # PostgreSQL's jsonb refuses NaN: stored, not lost
    got = store.get_task(task.id)
    assert got is not None and got.task.metadata == {"score": "nan", "bounds": ["inf", "-inf", 1.5]}


@given(st.text(st.characters(exclude_categories=())))  # surrogates and NUL included
def test_storable_text_is_always_storable_and_unchanged_when_it_can_be(text: str) -> None:
    stored = storable(text)
    assert stored is not None and "\x00" not in stored
    stored.encode("utf-8")  # no lone surrogate left
    if "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert stored == text


def test_a_decision_with_non_finite_scores_reads_back(tmp_path):
    import math

    from agentroute.memory import SQLMemory
    from agentroute.types import Agent, Decision, Step, Task

    with SQLMemory(f"sqlite:///{tmp_path}/m.db") as memory:
        task = Task(query="q")
        memory.start_task(task)
        decision = Decision(agents=[Agent(model="m")], scores={"a": math.nan, "b": math.inf})
        memory.record_step(Step(task_id=task.id, index=0, stage="execute", agent=Agent(model="m"), decision=decision))
        memory.flush()
        scores = memory.get_task(task.id).steps[0].decision.scores
    assert math.isnan(scores["a"]) and scores["b"] == math.inf
