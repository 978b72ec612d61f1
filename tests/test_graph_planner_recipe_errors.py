"""`agentroute train graph-planner --config` with a bad option: one line naming the recipe, its
line and the router's option (not PPO's inner field, not a raw TypeError), exit 2."""

import pytest
import typer

from agentroute import make_router
from agentroute.errors import ConfigurationError
from agentroute.training.ppo import PPOConfig, PPOOptionError


def _recipe(tmp_path, params):
    recipe = tmp_path / "gp.yaml"
    recipe.write_text(f"router: graph-planner\nparams:\n  {params}\n")
    return recipe


@pytest.mark.parametrize("params, says", [
    ("ppo_epochs: 0", "line 3: graph-planner: 'ppo_epochs' must be an integer ≥ 1 (got 0)"),  # was: ppo: 'epochs'
    ("clip: 1.5", "line 3: graph-planner: 'clip' must be a finite number in (0, 1) (got 1.5)"),  # was: 'must be in (0, 1)'
    ("lr_policy: fast", "line 3: graph-planner: lr_policy='fast' (str) is not float"),
    ("episodes: 10\n  epochs: 4", "line 4: graph-planner takes no parameter epochs (it takes: cost_weight,"),
])  # fmt: skip
def test_each_bad_option_names_its_line(tmp_path, capsys, params, says):
    from agentroute.cli.graph_planner_cmd import _train

    recipe = _recipe(tmp_path, params)
    with pytest.raises(typer.Exit) as stopped:
        _train(tmp_path / "out", None, "routerbench", recipe, False)
    err = capsys.readouterr().err
    assert stopped.value.exit_code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: recipe {recipe} {says}") and "ppo:" not in err
    assert not (tmp_path / "out").exists()  # refused before any data is read


def test_the_router_names_its_own_option():
    with pytest.raises(ConfigurationError, match=r"^graph-planner: 'ppo_epochs' must be an integer ≥ 1 \(got 0\)$"):
        make_router("graph-planner", ppo_epochs=0)


@pytest.mark.parametrize("field, value", [("lr_policy", "fast"), ("gamma", None), ("epochs", True), ("clip", float("nan"))])
def test_ppo_config_refuses_a_value_of_the_wrong_kind_in_one_line(field, value):
    with pytest.raises(PPOOptionError, match=f"^ppo: '{field}' must be") as caught:
        PPOConfig(**{field: value})
    assert caught.value.field == field
