"""A memory made by agentroute as revision 0003 was first released (6dda7cf: ``attempts`` without its
``stage`` column, added to 0003 in place afterwards) opens with this one and works: its attempts
get their stage (migration 0005), ``memory reconcile`` closes its crashed task charging the call in
flight, and ``ask`` writes to it — on SQLite and PostgreSQL, as a user runs the commands (before:
'no such column: attempts.stage' for every attempt written, resume and reconcile)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from agentroute.memory.migrate import alembic_config, current_revision, head_revision
from agentroute.memory.processes import this_process
from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.test_batch_server import GRAPH_PY, StubOpenAIServer, pool_yaml

AGENT = "executor:stub:direct"
WORST_USD = 0.000131  # an attempt's worst case as the old code stored it


def _old_memory(url: str) -> None:
    """Schema 0003 as 6dda7cf created it, with a task its killed process left running: its step 0
    stored (stage ``review``, not its role's), the call of its step 1 in flight."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
            old = sa.MetaData()
            attempts = sa.Table(
                "attempts", old,
                sa.Column("id", sa.String(), primary_key=True),
                sa.Column("task_id", sa.String(), nullable=False),
                sa.Column("step_index", sa.Integer(), nullable=False),
                sa.Column("attempt", sa.Integer(), nullable=False),
                sa.Column("agent", sa.String(), nullable=False),
                sa.Column("usd", sa.Float(), nullable=False),
                sa.Column("tokens", sa.Float(), nullable=False),
                sa.Column("calls", sa.Float(), nullable=False),
                sa.Column("large_calls", sa.Float(), nullable=False),
                sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                sa.Index("ix_attempts_task_id", "task_id"),
            )  # fmt: skip
            old.create_all(conn)
            command.stamp(cfg, "0003")
            gone = {"query_id": "q1", "agentroute_process": {**this_process(), "pid": 2**22 + 1}}  # above pid_max
            conn.execute(sa.text("INSERT INTO tasks (id, query, graph, status, cost_usd, meta, created_at) "
                                 "VALUES ('dead', 'q', 'one', 'running', 0, :meta, CURRENT_TIMESTAMP)"),
                         {"meta": json.dumps(gone)})  # fmt: skip
            conn.execute(sa.text(
                "INSERT INTO steps (id, task_id, step_index, stage, role, model, strategy, input, output, tokens_in, "
                "tokens_out, cost_usd, latency_ms, status, created_at) VALUES ('s0', 'dead', 0, 'review', 'executor', "
                "'stub', 'direct', 'q', 'a', 20, 5, 0.00003, 5, 'ok', CURRENT_TIMESTAMP)"))  # fmt: skip
            conn.execute(attempts.insert(), [
                {"id": f"a{i}", "task_id": "dead", "step_index": i, "attempt": 0, "agent": AGENT, "usd": WORST_USD,
                 "tokens": 123.0, "calls": 1.0, "large_calls": 0.0, "created_at": datetime.now(UTC)}
                for i in (0, 1)
            ])  # fmt: skip
    finally:
        engine.dispose()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentroute", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_a_memory_of_the_first_0003_reconciles_and_takes_attempts(memory_url: str, tmp_path: Path) -> None:  # noqa: F811
    _old_memory(memory_url)
    done = _cli("memory", "reconcile", "--memory", memory_url, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["closed"] == ["dead"]
    assert json.loads(done.stdout)["settled"] == {"calls": 1, "usd": WORST_USD}  # the call in flight, charged
    engine = sa.create_engine(memory_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            stages = dict(conn.execute(sa.text("SELECT step_index, stage FROM attempts WHERE task_id = 'dead'")).all())
            settling = conn.execute(sa.text("SELECT stage, cost_usd FROM steps WHERE task_id = 'dead' AND step_index = 1")).one()
        assert stages == {0: "review", 1: "executor"}  # its step's stage, else its role's
        assert tuple(settling) == ("executor", WORST_USD)
        with StubOpenAIServer() as server:
            (tmp_path / "pool.yaml").write_text(pool_yaml(server.url))
            (tmp_path / "graph.py").write_text(GRAPH_PY)
            asked = _cli("ask", "What is one?", "--pool", "pool.yaml", "--graph", "graph.py", "--memory", memory_url, cwd=tmp_path)
        assert asked.returncode == 0, asked.stderr
        assert "memory write" not in asked.stderr
        with engine.connect() as conn:
            written = conn.execute(sa.text("SELECT agent, stage FROM attempts WHERE task_id <> 'dead'")).all()
        assert [tuple(row) for row in written] == [("executor:stub:direct", "executor")]
    finally:
        engine.dispose()
