"""``agentroute memory``: stats, show and export on a real SQLite memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentroute.cli.memory_cmd import memory_app
from agentroute.memory import SQLMemory
from agentroute.types import Agent, AuditEvent, Decision, Step, Task, Trajectory

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def memory_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        for i, model in enumerate(["small-model", "large-model"]):
            task = Task(id=f"task{i}", query=f"what is {i}?", graph="qa")
            memory.start_task(task)
            agent = Agent(model=model)
            decision = Decision(agents=[agent], router="threshold")
            for k in range(2):
                step = Step(task_id=task.id, index=k, stage="answer", agent=agent, decision=decision,
                            output=f"answer {k}", tokens_in=10, tokens_out=2, cost_usd=0.01)  # fmt: skip
                memory.record_step(step)
            memory.record_audit(AuditEvent(task_id=task.id, stage="answer", kind="retry", subject=model))
            task.status, task.answer, task.score = "done", str(i), 1.0
            memory.finish_task(task)
    return url


def test_stats(memory_url: str) -> None:
    result = runner.invoke(memory_app, ["stats", "--memory", memory_url])
    assert result.exit_code == 0, result.output
    assert "small-model" in result.output and "large-model" in result.output
    assert "tasks" in result.output and "$0.040000" in result.output
    result = runner.invoke(memory_app, ["stats", "--memory", memory_url, "--json"])
    assert json.loads(result.output)["steps"] == 4


def test_show(memory_url: str) -> None:
    result = runner.invoke(memory_app, ["show", "task1", "--memory", memory_url])
    assert result.exit_code == 0, result.output
    assert "what is 1?" in result.output and "executor:large-model:direct" in result.output
    assert "retry" in result.output
    result = runner.invoke(memory_app, ["show", "task1", "--memory", memory_url, "--json"])
    data = json.loads(result.output)
    assert Trajectory.model_validate(data).task.id == "task1"
    assert [s["index"] for s in data["steps"]] == [0, 1] and data["audit_events"][0]["kind"] == "retry"


def test_show_unknown_task_fails_clearly(memory_url: str) -> None:
    result = runner.invoke(memory_app, ["show", "nope", "--memory", memory_url])
    assert result.exit_code == 1
    assert "no task 'nope'" in result.output


def test_missing_sqlite_file_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(memory_app, ["stats", "--memory", f"sqlite:///{tmp_path / 'absent.db'}"])
    assert result.exit_code == 2 and "no memory database" in result.output
    assert not (tmp_path / "absent.db").exists()
    result = runner.invoke(memory_app, ["stats", "--memory", "oracle://x"])
    assert result.exit_code == 2 and "oracle://x" in result.output


def test_export_jsonl_and_parquet(memory_url: str, tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    result = runner.invoke(
        memory_app, ["export", "--format", "jsonl", "--out", str(out), "--memory", memory_url]
    )
    assert result.exit_code == 0, result.output
    assert [Trajectory.model_validate_json(line).task.id for line in out.read_text().splitlines()] == [
        "task0",
        "task1",
    ]

    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "t.parquet"
    args = ["export", "--format", "parquet", "--out", str(out), "--memory", memory_url, "--limit", "1"]
    result = runner.invoke(memory_app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 2 rows" in result.output
    assert pq.read_table(out).column("task_id").to_pylist() == ["task0", "task0"]


@pytest.mark.parametrize("format", ["jsonl", "outcomes"])
def test_export_dash_is_standard_output(
    memory_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(memory_app, ["export", "--format", format, "--out", "-", "--memory", memory_url])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "-").exists()
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    if format == "jsonl":
        assert [Trajectory.model_validate(row).task.id for row in rows] == ["task0", "task1"]
    else:
        assert len(rows) == 4 and {row["task_id"] for row in rows} == {"task0", "task1"}
    assert "to standard output" in result.stderr


def test_export_parquet_to_standard_output_is_refused(
    memory_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(memory_app, ["export", "--format", "parquet", "--out", "-", "--memory", memory_url])
    assert result.exit_code == 2 and "--out -" in result.stderr and "parquet" in result.stderr
    assert not (tmp_path / "-").exists()


def test_show_prints_bracketed_text_as_written(tmp_path: Path) -> None:
    """A web episode's query "[choose-list] Select Kelly…" showed as " Select Kelly…": the cell was
    read as rich markup ([bold] in an answer or an error message went the same way)."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with SQLMemory(url) as memory:
        task = Task(id="web1", query="[choose-list] Select Kelly", graph="web")
        memory.start_task(task)
        agent = Agent(model="m")
        memory.record_step(Step(task_id="web1", index=0, stage="act", agent=agent, output="[bold]click[/bold]",
                                error="[red]boom[/red]", status="failed"))  # fmt: skip
        task.status, task.answer = "failed", "[x] done"
        memory.finish_task(task)
    result = runner.invoke(memory_app, ["show", "web1", "--memory", url])
    assert result.exit_code == 0, result.output
    for text in ("[choose-list] Select Kelly", "[bold]click[/bold]", "[red]boom[/red]", "[x] done"):
        assert text in result.output, (text, result.output)


def test_reconcile_dry_run_counts_and_json_names_what_it_closed(tmp_path: Path) -> None:
    """A running task whose recorded process is gone (a pid no process has): ``--dry-run`` only
    counts it, ``reconcile`` closes it (``--json`` names it), a task of this live process stays."""
    import sqlalchemy as sa

    from agentroute.memory.processes import this_process

    url = f"sqlite:///{tmp_path / 'memory.db'}"
    with SQLMemory(url) as memory:
        for task_id in ("mine", "dead"):
            memory.start_task(Task(id=task_id, query="q", graph="qa"))
        memory.flush()
        gone = {"agentroute_process": {**this_process(), "pid": 2**22 + 1}}  # above Linux's pid_max
        with memory.engine.begin() as conn:
            conn.execute(sa.text("UPDATE tasks SET meta = :meta WHERE id = 'dead'"), {"meta": json.dumps(gone)})
        dry = runner.invoke(memory_app, ["reconcile", "--memory", url, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "1 running task(s) whose process is gone (--dry-run: none closed)" in dry.output
        assert memory.get_task("dead").task.status == "running"  # type: ignore[union-attr]
        done = runner.invoke(memory_app, ["reconcile", "--memory", url, "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.output) == {"closed": ["dead"], "found": {"alive": 1, "gone": 1, "other_host": 0, "unknown": 0},
                                            "settled": {"calls": 0, "usd": 0.0}}  # no call was in flight
        assert memory.get_task("dead").task.status == "interrupted"  # type: ignore[union-attr]
        assert memory.get_task("mine").task.status == "running"  # type: ignore[union-attr]
        assert memory.stats()["running"] == {"alive": 1, "gone": 0, "other_host": 0, "unknown": 0}
