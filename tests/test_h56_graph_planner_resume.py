"""A GraphPlanner checkpoint is resumed only on the data it was trained on: costs and query texts included."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agentroute.errors import ConfigurationError
from agentroute.eval.datasets import load_dataset
from agentroute.outcomes import as_outcome_table
from agentroute.routers.graph_planner.router import GraphPlannerRouter

PARAMS = {"episodes": 32, "episodes_per_update": 16, "hidden": 8, "seed": 1}


@pytest.fixture(scope="module")
def table(data_dir):
    return as_outcome_table(load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=20).train)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("gp") / "checkpoint.pt"
    GraphPlannerRouter(**PARAMS).fit(table, checkpoint=path)
    return path


@pytest.mark.parametrize("changed", ["costs", "queries"])
def test_a_checkpoint_of_other_costs_or_questions_is_refused_naming_it(table, checkpoint, changed):
    """Was: resumed silently — a policy half-trained on the old costs finished on the new ones."""
    other = dataclasses.replace(table, costs=np.asarray(table.costs) * 2) if changed == "costs" else \
        dataclasses.replace(table, queries=[q + " (reworded)" for q in table.queries])
    with pytest.raises(ConfigurationError, match=f"{checkpoint}: a checkpoint of another training run"):
        GraphPlannerRouter(**PARAMS).fit(other, checkpoint=checkpoint)


def test_the_same_data_resumes_it(table, checkpoint):
    rows: list[dict] = []
    GraphPlannerRouter(**{**PARAMS, "episodes": 48}).fit(table, checkpoint=checkpoint, progress=rows.append)
    assert [r["episodes"] for r in rows] == [48]


def test_a_checkpoint_past_the_episodes_asked_for_is_refused_saying_how_many(tmp_path, table):
    """Was: resumed and 'finished' at once — a router of 32 episodes saved as one of 16."""
    path = tmp_path / "checkpoint.pt"
    GraphPlannerRouter(**PARAMS).fit(table, checkpoint=path)
    with pytest.raises(ConfigurationError, match=r"after 32 episodes, more than the 16 asked for .*set episodes to 32 or more"):
        GraphPlannerRouter(**{**PARAMS, "episodes": 16}).fit(table, checkpoint=path)
    assert GraphPlannerRouter(**PARAMS).fit(table, checkpoint=path).train_log_[-1]["episodes"] == 32
