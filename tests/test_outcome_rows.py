"""The memory and its ``outcomes`` export give one table: a row without a query id takes the id
its query text has elsewhere (one rule, :func:`agentroute.outcomes.borrowed_query_ids`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agentroute.eval.datasets import load_outcomes
from agentroute.memory.export import write_outcomes
from agentroute.outcomes import OutcomeTable
from agentroute.types import Agent, Step, Task, Trajectory

QUESTION = "What is the capital of France?"


def _trajectory(query: str, inputs: list[str], models: list[str], query_id: str | None = None) -> Trajectory:
    task = Task(query=query, status="done", metadata={} if query_id is None else {"query_id": query_id})  # scored by its steps
    steps = [
        Step(task_id=task.id, index=i, stage="execute", agent=Agent(model=model), input=text, cost_usd=0.01 * (i + 1), score=0.5)
        for i, (text, model) in enumerate(zip(inputs, models, strict=True))
    ]
    return Trajectory(task=task, steps=steps)


def _logs() -> list[Trajectory]:
    """A one-step task ``q7`` and a two-step task whose first step's input is q7's query."""
    return [
        _trajectory(QUESTION, [QUESTION], ["small"], query_id="q7"),
        _trajectory("Plan a trip", [QUESTION, "Book a train to Paris"], ["large", "small"], query_id="trip"),
    ]


def test_a_step_whose_input_is_a_named_querys_text_joins_that_querys_row_from_the_memory() -> None:
    """Before: from the memory the step was a row of its own ('What is…' beside 'q7': 3 rows),
    while the exported file read back as 2 rows."""
    table = OutcomeTable.from_trajectories(_logs())
    assert table.query_ids == ["q7", "Book a train to Paris"]
    assert table.models == ["executor:small:direct", "executor:large:direct"]
    np.testing.assert_array_equal(table.scores, [[0.5, 0.5], [0.5, np.nan]])


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_training_on_the_memory_and_on_its_export_sees_the_same_rows(tmp_path: Path, suffix: str) -> None:
    from_memory = OutcomeTable.from_trajectories(_logs())
    path = tmp_path / f"outcomes{suffix}"
    write_outcomes(_logs(), path)
    data = load_outcomes(path, require_test=False)
    read_back = dict(zip(data.train.queries + data.test.queries, data.train.query_ids + data.test.query_ids, strict=True))
    assert sorted(read_back) == sorted(from_memory.queries)
    assert read_back[QUESTION] == from_memory.query_ids[0] == "q7"


def test_two_ids_for_one_text_lend_neither() -> None:
    """A text two one-step tasks name differently stays a row of its own for an unnamed step."""
    logs = [*_logs(), _trajectory(QUESTION, [QUESTION], ["large"], query_id="q8")]
    assert OutcomeTable.from_trajectories(logs).query_ids == ["q7", QUESTION, "Book a train to Paris", "q8"]


def test_a_query_asked_twice_averages_its_outcomes_from_the_memory_as_from_its_export(tmp_path: Path) -> None:
    """Before: from the memory the later outcome won (score 0.0, cost 0.03), while the exported
    file averaged the two rows (0.5, 0.02)."""
    first, again = _trajectory(QUESTION, [QUESTION], ["small"], query_id="q7"), _trajectory(QUESTION, [QUESTION], ["small"], query_id="q7")
    first.steps[0].score, again.steps[0].score = 1.0, 0.0
    first.steps[0].cost_usd, again.steps[0].cost_usd = 0.01, 0.03
    table = OutcomeTable.from_trajectories([first, again])
    assert (table.scores.tolist(), table.costs.tolist()) == ([[0.5]], [[0.02]])
    path = tmp_path / "outcomes.jsonl"
    write_outcomes([first, again], path)
    from_file = load_outcomes(path, require_test=False).train
    assert (from_file.scores.tolist(), from_file.costs.tolist()) == ([[0.5]], [[0.02]])
