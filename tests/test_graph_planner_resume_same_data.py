"""A GraphPlanner checkpoint is resumed only on the data it was trained on: costs and query texts included."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

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


KILLED_AFTER_ONE_UPDATE = """
import os, sys
from agentroute.eval.datasets import load_dataset
from agentroute.routers.graph_planner.router import GraphPlannerRouter
table = load_dataset("routerbench:" + sys.argv[1], limit=20).train
seen = []
def progress(row):
    seen.append(row)
    if len(seen) == 1:
        os._exit(9)  # a kill -9: no finally, no Ctrl-C handler; only what the timer wrote is there
GraphPlannerRouter(episodes=32, episodes_per_update=16, hidden=8, seed=1).fit(
    table, checkpoint=sys.argv[2], checkpoint_every_s=0.0, progress=progress)
"""


def test_the_timed_checkpoint_survives_a_kill_and_resumes_to_the_uninterrupted_router(tmp_path, data_dir):
    """The every-N-seconds write is what a kill -9 leaves; resumed, the router is the uninterrupted one's."""
    checkpoint = tmp_path / "checkpoint.pt"
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_ONE_UPDATE, str(data_dir / "routerbench"), str(checkpoint)],
                            capture_output=True, text=True, timeout=300)  # this process's threads: the same sums
    assert killed.returncode == 9, killed.stderr
    table = load_dataset(f"routerbench:{data_dir / 'routerbench'}", limit=20).train
    rows: list[dict] = []
    resumed = GraphPlannerRouter(**PARAMS).fit(table, checkpoint=checkpoint, progress=rows.append)
    assert [r["episodes"] for r in rows] == [32]  # the first update's checkpoint, written by the timer
    straight = GraphPlannerRouter(**PARAMS).fit(table)
    for name, value in straight.get_arrays().items():
        np.testing.assert_array_equal(resumed.get_arrays()[name], value, err_msg=name)
