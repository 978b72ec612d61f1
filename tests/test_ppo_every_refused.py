"""Several bad PPO hyperparameters are all named in one line, from Python (``PPOConfig(...)``, a
graph-planner router's ``ppo_config()``) and from a recipe (`agentroute train graph-planner
--config`): was the first one only, fixed and run again until each was gone."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from agentroute import make_router
from agentroute.errors import ConfigurationError
from agentroute.training.ppo import PPOConfig, PPOOptionError
from tests.test_ppo_option_wording import train_graph_planner

GAMMA = "'gamma' must be a finite number in [0, 1] (got 2)"
CLIP = "'clip' must be a finite number in (0, 1) (got 1.5)"


def test_ppo_config_names_every_bad_field_in_field_order() -> None:
    with pytest.raises(PPOOptionError) as refused:
        PPOConfig(epochs=0, clip=1.5, gamma=2, lr_policy=-1)
    assert str(refused.value) == (
        f"ppo: 'lr_policy' must be a finite number > 0 (got -1); {GAMMA}; {CLIP}; 'epochs' must be an integer ≥ 1 (got 0)"
    )
    assert [field for field, _, _ in refused.value.refusals] == ["lr_policy", "gamma", "clip", "epochs"]
    assert (refused.value.field, refused.value.rule, refused.value.value) == (
        "lr_policy",
        "a finite number > 0",
        -1,
    )
    back = pickle.loads(pickle.dumps(refused.value))  # a worker process hands its parent every refusal
    assert str(back) == str(refused.value) and back.refusals == refused.value.refusals


def test_a_router_names_each_of_its_own_ppo_options() -> None:
    router = make_router("graph-planner", episodes=4)
    router.gamma, router.ppo_epochs = 2, 0  # set after it was built, as sklearn-style code does
    with pytest.raises(ConfigurationError) as refused:
        router.ppo_config()
    assert str(refused.value) == f"graph-planner: {GAMMA}; 'ppo_epochs' must be an integer ≥ 1 (got 0)"


def test_train_graph_planner_names_every_bad_option_of_the_recipe_in_one_line(tmp_path: Path) -> None:
    recipe, done = train_graph_planner(tmp_path, "  gamma: 2\n  clip: 1.5\n  ppo_epochs: 0\n")
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: recipe {recipe} line 4: graph-planner: {GAMMA}; line 5: graph-planner: {CLIP}; "
        "line 6: graph-planner: 'ppo_epochs' must be an integer ≥ 1 (got 0)\n"
    )
    assert not (tmp_path / "out").exists()  # refused before any data is read
