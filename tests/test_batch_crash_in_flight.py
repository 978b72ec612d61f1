"""`agentroute run --input` killed with provider calls in flight: the query's budget holds across the rerun.

A real ``agentroute run`` subprocess runs a two-role graph (planner → executor) over two queries
against a loopback OpenAI-compatible server that bills every call its worst case ``W`` = 100 tokens
× $10/M = $0.001 (the model runs to ``max_tokens``). Query ``A``'s planner call hangs, query ``B``'s
executor call hangs (its planner answered); the process is killed (``SIGKILL``) while both hang, and
``agentroute run --resume`` reruns them: on SQLite after ``agentroute memory reconcile`` closed the
killed run's tasks (a process of its own, which says it stored the two calls in flight at their
worst case), on PostgreSQL with the rerun's own reconcile of its dead worker doing it.

The budget is ``2.5 W`` per query. Before, the reconcile closed each task at the cost of its stored
steps (A: $0, B: $0.001), with no trace of the hung call, and the rerun got a fresh budget: A was
billed ``3 W`` = $0.003 and B ``4 W`` = $0.004 against $0.0025. Now the hung call is stored as a
failed step at its worst case and audited (``unsettled_attempt``), and the rerun's budget is what the
interrupted task left: A's rerun (``1.5 W``) plans, then cannot afford the executor; B's (``0.5 W``)
makes no call. Each ends ``budget_exhausted``, billed ``2 W``, and its tasks' stored costs add up to that.

What the user reads holds the same bill: each query's ``--out`` line says ``cost_usd`` ``2 W``, its
tasks' together (``task_cost_usd``: the rerun's own, ``continues``: the interrupted task), and so does
its batch item; the run's printed cost is ``4 W``, as ``agentroute memory stats``. Before, the line
and the item said the rerun's own cost only (A ``1 W``, B $0), the run printed $0.001.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from agentroute.cli.app import app
from tests.fixtures_billing_provider import BillingProvider
from tests.fixtures_postgres import postgres_url  # noqa: F401 - a fixture

OUT_PRICE = 10.0  # USD per 1M output tokens; input is free, so a call's worst case is exact
WORST = 100 * OUT_PRICE / 1e6  # $0.001: the card allows 200 tokens, the `direct` strategy asks 100
LIMIT = 2.5 * WORST
#: The call of each query that hangs in the killed run: (query key, start of its role's system prompt).
HANGS = {("A", "Plan."), ("B", "Answer.")}
AGENTROUTE = [sys.executable, "-c", "from agentroute.cli import main; main()"]
GRAPH_PY = (
    "from agentroute.graph import AgentGraph\n\n"
    'graph = AgentGraph("crash").add_role("planner", prompt="Plan.").add_role("executor", prompt="Answer.")'
    '.add_edge("planner", "executor")\n'
)


def _query(body: dict[str, Any]) -> str:
    """The query key (``A`` or ``B``) a request's messages carry."""
    found = re.search(r"\b([AB])-[0-9a-f]{8}\b", json.dumps(body["messages"]))
    return found.group(1) if found else "?"


def _hangs(key: str, system: str) -> bool:
    return any(key == k and system.startswith(role) for k, role in HANGS)


@pytest.fixture
def provider() -> Iterator[BillingProvider]:
    """The provider of :data:`HANGS`, billing by query key."""
    with BillingProvider(key=_query, hangs=_hangs, out_price=OUT_PRICE) as server:
        yield server


def _files(tmp_path: Path, url: str) -> tuple[list[str], str]:
    """The ``agentroute run`` command line over a fresh input (its own batch) and the run's suffix."""
    run = uuid.uuid4().hex[:8]
    (tmp_path / "graph.py").write_text(GRAPH_PY)
    (tmp_path / "pool.yaml").write_text(
        f"models:\n  - id: m\n    backend: openai\n    model: m\n    base_url: {url}\n    input_price: 0.0\n"
        f"    output_price: {OUT_PRICE}\n    max_tokens: 200\n    timeout_s: 30\n    context_window: 4096\n"
    )
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"query": f"{k}-{run}", "query_id": f"{k}-{run}"}) + "\n" for k in "AB"))
    command = [
        *AGENTROUTE, "run", str(tmp_path / "graph.py"), "--input", str(tmp_path / "in.jsonl"), "--pool", str(tmp_path / "pool.yaml"),
        "--router", "cheapest", "--budget-usd", str(LIMIT), "--budget-calls", "4", "--budget-seconds", "30",
        "--concurrency", "2", "--resume", "--out", str(tmp_path / "out.jsonl"),
    ]  # fmt: skip
    return command, run


def _tasks(url: str, run: str) -> dict[str, list[dict[str, Any]]]:
    """Each query's tasks, oldest first, with their audit events' kinds and details."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, query, status, cost_usd, budget, meta FROM tasks WHERE query LIKE :q ORDER BY created_at"),
                {"q": f"%-{run}"},
            ).mappings().all()  # fmt: skip
            out: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                audit = conn.execute(sa.text("SELECT kind, detail FROM audit_events WHERE task_id = :t"), {"t": row["id"]}).all()
                loads = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731 - SQLite gives text
                out[row["query"][0]].append({**row, "budget": loads(row["budget"]), "meta": loads(row["meta"]), "audit": audit})
            return out
    finally:
        engine.dispose()


def _crash_and_rerun(
    provider: BillingProvider, tmp_path: Path, url: str, *, reconcile: bool
) -> tuple[dict[str, Any], dict[str, Any], str, list[str]]:
    """The tasks after the reconcile and after the rerun, the rerun's output and its command line."""
    command, run = _files(tmp_path, provider.url)
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.Popen([*command, "--memory", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a wait
        while time.monotonic() < deadline and first.poll() is None and provider.hanging < len(HANGS):
            time.sleep(0.02)
        assert first.poll() is None and provider.hanging == len(HANGS), "the run did not reach its hanging calls"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        if first.stdout is not None:
            first.stdout.close()
    provider.hang = False
    if reconcile:  # what it settled, said (was: only "closed 2 task(s) …")
        done = subprocess.run([*AGENTROUTE, "memory", "reconcile", "--memory", url], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            f"closed 2 task(s) whose process is gone as interrupted; 2 call(s) in flight stored at their worst case (${2 * WORST:.6g})"
            in done.stdout
        ), done.stdout
    # the killed run is a process of its own; the commands after it run here, as `agentroute` would
    # run them (the CLI's own app), a process start each saved
    closed = _tasks(url, run)
    rerun_args = [*command[len(AGENTROUTE) :], "--memory", url]
    rerun = CliRunner().invoke(app, rerun_args, env={"COLUMNS": "200"})
    assert rerun.exit_code == 0, rerun.output
    return closed, _tasks(url, run), rerun.output, rerun_args


def _check(provider: BillingProvider, closed: dict[str, Any], final: dict[str, Any], *, reconcile: bool) -> None:
    for key, hung in (("A", WORST), ("B", 2 * WORST)):
        earlier, rerun = final[key]
        if reconcile:  # `memory reconcile` closed it, before the rerun
            assert closed[key] == [earlier], closed
        # closed at what the provider billed: the hung call is a failed step at its worst case, audited
        assert earlier["status"] == "interrupted" and earlier["cost_usd"] == pytest.approx(hung), final
        assert [kind for kind, _ in earlier["audit"]] == ["unsettled_attempt"], final
        # was: A billed $0.003, B $0.004 on a $0.0025 budget (the rerun had a fresh one)
        assert provider.billed[key] <= LIMIT + 1e-12, (key, dict(provider.billed))
        assert earlier["cost_usd"] + rerun["cost_usd"] == pytest.approx(provider.billed[key]), final
        assert rerun["status"] == "budget_exhausted", final
        # what the interrupted task left: calls count its attempts, the hung one too; seconds are given afresh
        assert rerun["budget"] == {"usd": pytest.approx(LIMIT - hung), "calls": 4 - round(hung / WORST), "seconds": 30}, final
        assert rerun["meta"]["agentroute_batch"]["continues"] == [earlier["id"]], final
    assert provider.calls["B"] == 2, dict(provider.calls)  # B's rerun could afford no call: it made none


def _check_read(provider: BillingProvider, tmp_path: Path, url: str, final: dict[str, Any], printed: str) -> None:
    """What the user reads of the bill: the ``--out`` lines, the batch items, the printed cost, ``memory stats``."""
    lines = {line["query_id"][0]: line for line in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert sorted(lines) == ["A", "B"], lines
    for key, (earlier, rerun) in final.items():
        line = lines[key]  # was: cost_usd the rerun's own (A $0.001, B $0), the interrupted task's missing
        assert line["cost_usd"] == pytest.approx(provider.billed[key]) == pytest.approx(2 * WORST), line
        assert line["task_id"] == rerun["id"] and line["task_cost_usd"] == pytest.approx(rerun["cost_usd"]), line
        assert line["continues"] == [earlier["id"]], line
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            items = dict(conn.execute(sa.text("SELECT query_id, cost_usd FROM batch_items")).tuples().all())
    finally:
        engine.dispose()
    assert {k[0]: v for k, v in items.items()} == {k: pytest.approx(provider.billed[k]) for k in "AB"}, items
    stats = CliRunner().invoke(app, ["memory", "stats", "--json", "--memory", url])
    assert stats.exit_code == 0, stats.output
    bill = sum(provider.billed.values())  # 4 W: the memory holds this batch only
    assert json.loads(stats.output)["cost_usd"] == pytest.approx(bill)
    assert sum(line["cost_usd"] for line in lines.values()) == pytest.approx(bill)
    assert f"cost of the queries ended here ${bill:.6f}" in printed, printed  # was $0.001000


def test_memory_reconcile_settles_the_calls_in_flight_then_the_rerun_keeps_the_budget_sqlite(provider: BillingProvider, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/memory.db"
    closed, final, printed, rerun_args = _crash_and_rerun(provider, tmp_path, url, reconcile=True)
    _check(provider, closed, final, reconcile=True)
    _check_read(provider, tmp_path, url, final, printed)
    # its lines lost (a crash between the commit and the write): the next `--resume` writes them, same cost
    out = tmp_path / "out.jsonl"
    written = sorted(out.read_text().splitlines())
    out.write_text("")
    again = CliRunner().invoke(app, rerun_args, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert sorted(out.read_text().splitlines()) == written
    earlier, rerun = final["A"]
    shown = CliRunner().invoke(app, ["memory", "show", rerun["id"], "--memory", url], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert f"continues │ {earlier['id']} (its budget: what they left)" in shown.output  # why its budget is smaller


@pytest.mark.postgres
def test_the_batch_reconcile_settles_the_calls_in_flight_then_the_rerun_keeps_the_budget_postgres(
    provider: BillingProvider, tmp_path: Path, postgres_url: str,  # noqa: F811
) -> None:
    closed, final, printed, _ = _crash_and_rerun(provider, tmp_path, postgres_url, reconcile=False)
    _check(provider, closed, final, reconcile=False)
    _check_read(provider, tmp_path, postgres_url, final, printed)
