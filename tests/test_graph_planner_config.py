"""GraphPlanner's hyperparameters as an ML engineer mistypes them: refused with what, why and the
allowed range, and by ``agentroute train graph-planner`` before it reads (and embeds) any data."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from agentroute.cli import app
from agentroute.errors import ConfigurationError
from agentroute.routers.graph_planner.router import GraphPlannerRouter
from agentroute.training.ppo import PPOConfig

runner = CliRunner()


@pytest.mark.parametrize(("params", "says"), [
    ({"cost_weight": math.inf}, "'cost_weight' must be a finite number ≥ 0 (got inf)"),  # was: every reward −inf/NaN
    ({"entropy_coef": math.nan}, "'entropy_coef' must be a finite number ≥ 0 (got nan)"),  # was: NaN losses
    ({"lr_value": math.inf}, "'lr_value' must be a finite number > 0 (got inf)"),
    ({"query_chars": 0}, "'query_chars' must be an integer ≥ 1 or None (the whole text) (got 0)"),  # was: empty texts embedded
    ({"seed": -1}, "'seed' must be an integer ≥ 0 (got -1)"),  # was: numpy's ValueError mid-fit
    ({"seed": 1.5}, "'seed' must be an integer ≥ 0 (got 1.5)"),
    ({"hidden": True}, "'hidden' must be an integer ≥ 1 (got True)"),
    ({"episodes": 0}, "'episodes' must be an integer ≥ 1 (got 0)"),
])
def test_nonsense_values_are_refused_before_training(params, says):
    with pytest.raises(ConfigurationError) as refused:
        GraphPlannerRouter(**params).fit(None)  # refused before the data is looked at
    assert says in str(refused.value)


def test_ppo_config_refuses_a_nan_grad_clip():
    with pytest.raises(ConfigurationError, match="'max_grad_norm' must be a finite number > 0 or None"):
        PPOConfig(max_grad_norm=math.nan)


def test_the_cli_refuses_a_bad_parameter_before_reading_the_data(tmp_path):
    recipe = tmp_path / "gp.yaml"
    recipe.write_text("router: graph-planner\nparams:\n  lr_policy: -1.0e-4\n")
    result = runner.invoke(app, ["train", "graph-planner", "--dataset", f"routerbench:{tmp_path / 'nowhere'}",
                                 "--config", str(recipe), "--out", str(tmp_path / "gp")])
    assert result.exit_code == 2
    assert "'lr_policy' must be a finite number > 0 (got -0.0001)" in result.output  # was: the missing dataset
    assert "training graph-planner" not in result.output and not (tmp_path / "gp").exists()
