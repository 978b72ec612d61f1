"""Tasks an agentroute older than process records (schema 0001) left ``running`` record no process:
``memory reconcile`` cannot tell whether they still run and leaves them (before: for ever, and
``memory stats`` said nothing). ``memory stats`` now names them and the command, and ``memory
reconcile --older-than DURATION`` closes those started longer ago than that as interrupted with
their steps' cost, leaving younger ones — on SQLite and PostgreSQL, as a user runs the commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.fixtures_old_memory import json_param, memory_at

STEP_USD = 0.00003


def _old_memory(url: str) -> None:
    """Two ``running`` tasks as the 0001 releases left them (no process in their metadata): ``old``,
    started two days ago with one stored step, and ``young``, started now."""
    with memory_at(url, "0001") as conn:
        pg = conn.dialect.name == "postgresql"
        days_ago = "now() - interval '2 days'" if pg else "datetime('now', '-2 days')"
        for task_id, created in (("old", days_ago), ("young", "CURRENT_TIMESTAMP")):
            conn.execute(sa.text("INSERT INTO tasks (id, query, graph, status, cost_usd, meta, created_at) "
                                 f"VALUES (:id, 'q', 'one', 'running', 0, {json_param(conn, 'meta')}, {created})"),
                         {"id": task_id, "meta": json.dumps({"query_id": task_id})})  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO steps (id, task_id, step_index, stage, role, model, strategy, input, output, tokens_in, "
            "tokens_out, cost_usd, latency_ms, status, created_at) VALUES ('s0', 'old', 0, 'executor', 'executor', "
            f"'stub', 'direct', 'q', 'a', 20, 5, {STEP_USD}, 5, 'ok', CURRENT_TIMESTAMP)"))  # fmt: skip


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentroute", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _said(done: subprocess.CompletedProcess[str]) -> str:
    return " ".join((done.stdout + done.stderr).split())


def _tasks(url: str) -> dict[str, tuple[str, float, str | None]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, status, cost_usd, meta FROM tasks")).all()
    finally:
        engine.dispose()
    return {i: (s, c, (m if isinstance(m, dict) else json.loads(m)).get("error")) for i, s, c, m in rows}


def test_unrecorded_running_tasks_are_named_and_closed_by_age(memory_url: str, tmp_path: Path) -> None:  # noqa: F811
    _old_memory(memory_url)
    stats = _cli("memory", "stats", "--memory", memory_url, cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "2 running task(s) without a recorded process" in _said(stats)
    assert "agentroute memory reconcile --older-than 1d" in _said(stats)

    plain = _cli("memory", "reconcile", "--memory", memory_url, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "2 without a recorded process (--older-than DURATION closes those started longer ago)" in _said(
        plain
    )
    assert {i: t[0] for i, t in _tasks(memory_url).items()} == {"old": "running", "young": "running"}

    looked = _cli(
        "memory", "reconcile", "--memory", memory_url, "--older-than", "1d", "--dry-run", cwd=tmp_path
    )
    assert looked.returncode == 0, looked.stderr
    assert "1 without a recorded process started over 1d ago (--dry-run: none closed)" in _said(looked)
    assert {i: t[0] for i, t in _tasks(memory_url).items()} == {"old": "running", "young": "running"}

    closed = _cli("memory", "reconcile", "--memory", memory_url, "--older-than", "1d", "--json", cwd=tmp_path)
    assert closed.returncode == 0, closed.stderr
    assert json.loads(closed.stdout)["closed"] == ["old"]
    tasks = _tasks(memory_url)
    assert tasks["young"][0] == "running"
    status, cost, error = tasks["old"]
    assert (status, cost) == ("interrupted", STEP_USD)  # its stored step's cost
    assert error is not None and error.startswith(
        "it recorded no process and started over 1 d before; closed by reconcile"
    )


def test_a_wrong_duration_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    _old_memory(url)
    for wrong in ("soon", "-1h", "0", "inf"):
        done = _cli("memory", "reconcile", "--memory", url, "--older-than", wrong, cwd=tmp_path)
        assert done.returncode == 2, (wrong, done.stdout, done.stderr)
        assert "--older-than" in done.stderr and "90s, 30m, 12h or 7d" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert {i: t[0] for i, t in _tasks(url).items()} == {"old": "running", "young": "running"}
