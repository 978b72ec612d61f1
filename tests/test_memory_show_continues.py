"""``agentroute memory show`` of a batch item's rerun names the interrupted task(s) it continues,
and says its budget is what they left only when it has a budget (a graph without one keeps none:
the note was printed for it all the same). Real SQLite memory, the CLI's own ``show`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentroute.budget import Budget
from agentroute.cli.memory_cmd import memory_app
from agentroute.memory import SQLMemory
from agentroute.memory.batches import META_KEY
from agentroute.types import Task


@pytest.mark.parametrize("budget", [Budget(usd=0.5), None])
def test_show_names_the_tasks_a_rerun_continues(tmp_path: Path, budget: Budget | None) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    task = Task(query="q", budget=budget, metadata={"query_id": "q", META_KEY: {"id": "b", "worker": "w", "continues": ["t-earlier"]}})
    with SQLMemory(url) as memory:
        memory.start_task(task)
        memory.flush()
    result = CliRunner().invoke(memory_app, ["show", task.id, "--memory", url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "continues" in line)
    assert "continues │ t-earlier" in line, result.output
    # was: "(its budget: what they left)" for a rerun with no budget too
    assert ("(its budget: what they left)" in line) == (budget is not None), line
