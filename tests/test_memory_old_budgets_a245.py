"""A memory written by the releases of 2026-11-24 (schema 0001), whose ``Budget`` took any positive
number, holds task budgets this agentroute refuses (``usd`` 1e20, infinite, NaN). After the upgrade
``memory export`` and ``memory show`` read them as no limit, which they were in effect (before: the
export stopped at the first such task, 'budget usd must be finite and at most 1e+15', and ``show``
printed a traceback) — on SQLite and PostgreSQL, as a user runs the commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.fixtures_memory import memory_url  # noqa: F401 - the fixture: SQLite, PostgreSQL
from tests.fixtures_old_memory import json_param, memory_at

#: Budgets as the 11-24 code stored them (json.dumps of its model_dump); PostgreSQL's jsonb took no
#: Infinity or NaN, so those rows exist in SQLite memories only.
OLD_BUDGETS = {"big": '{"usd": 1e+20}', "fine": '{"usd": 0.001, "calls": 4}', "counts": '{"tokens": 100000000000000000000}'}
SQLITE_ONLY = {"inf": '{"usd": Infinity, "calls": 3}', "nan": '{"seconds": NaN}'}


def _old_memory(url: str) -> dict[str, str]:
    budgets = OLD_BUDGETS | (SQLITE_ONLY if url.startswith("sqlite") else {})
    with memory_at(url, "0001") as conn:
        conn.execute(sa.text("INSERT INTO tasks (id, query, graph, budget, status, answer, cost_usd, meta, created_at, "
                             f"finished_at) VALUES (:id, 'q', 'qa', {json_param(conn, 'budget')}, 'done', 'a', 0.00003, "
                             "'{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                     [{"id": task_id, "budget": budget} for task_id, budget in budgets.items()])  # fmt: skip
    return budgets


def _given(budget: dict[str, float | None] | None) -> dict[str, float] | None:
    return None if budget is None else {name: limit for name, limit in budget.items() if limit is not None}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentroute", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_tasks_with_budgets_of_the_first_release_export_and_show(memory_url: str, tmp_path: Path) -> None:  # noqa: F811
    budgets = _old_memory(memory_url)
    out = tmp_path / "tasks.jsonl"
    exported = _cli("memory", "export", "--memory", memory_url, "--format", "jsonl", "--out", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    read = {line["task"]["id"]: _given(line["task"]["budget"]) for line in map(json.loads, out.read_text().splitlines())}
    expected = {"big": None, "fine": {"usd": 0.001, "calls": 4}, "counts": None, "inf": {"calls": 3}, "nan": None}
    assert read == {task_id: expected[task_id] for task_id in budgets}  # every task; a refused limit is no limit
    shown = _cli("memory", "show", "big", "--memory", memory_url, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["task"]["budget"] is None
