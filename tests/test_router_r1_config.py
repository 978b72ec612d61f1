"""Router-R1 recipes with nonsense values: refused when the recipe is read (before the policy loads,
the traces' pool calls and the SFT warm-up), naming the section, the value and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1 import LoopSettings
from agentroute.routers.router_r1.trainer import RouterR1TrainConfig

BASE = {"pool": "default", "data": {"train": 50}, "grpo": {"max_steps": 2, "per_device_train_batch_size": 4, "num_generations": 4}}


def _read(tmp_path, **sections):
    recipe = tmp_path / "recipe.yaml"
    merged = {**BASE, **{k: {**BASE.get(k, {}), **v} for k, v in sections.items()}}
    recipe.write_text(yaml.safe_dump(merged))
    return RouterR1TrainConfig.from_yaml(recipe)


@pytest.mark.parametrize(("sections", "says"), [
    # was: accepted, then TRL refused it after the SFT warm-up had run (minutes)
    ({"grpo": {"num_generations": 1, "per_device_train_batch_size": 2}}, "grpo: GRPO requires at least 2 generations"),
    # was: accepted and trained (a negative rate ascends the loss; NaN weights)
    ({"grpo": {"learning_rate": -1e-6}}, "grpo: 'learning_rate' must be a finite number in (0, 1] (got -1e-06)"),
    ({"grpo": {"beta": float("nan")}}, "grpo: 'beta' must be a finite number ≥ 0 (got nan)"),
    ({"grpo": {"max_steps": 0}}, "grpo: 'max_steps' must be a finite number ≥ 1 (got 0)"),
    ({"grpo": {"temperature": 0.0}}, "grpo: 'temperature' must be a finite number > 0 (got 0.0)"),
    ({"sft": {"enabled": True, "lr": -1.0}}, "sft: 'lr' must be a finite number in (0, 1] (got -1.0)"),
    ({"sft": {"enabled": True, "epochs": 0}}, "sft: 'epochs' must be a finite number ≥ 1 (got 0)"),
    ({"sft": {"enabled": True, "trace": 5}}, "sft: unknown keys ['trace']"),  # was: ignored, 50 traces built
    ({"data": {"train": 0}}, "data: 'train' must be a finite number ≥ 1 (got 0)"),
    ({"data": {"trian": 5}}, "data: unknown keys ['trian']"),
    ({"reward": {"alpha": 2.0}}, "reward: 'alpha' must be a finite number in [0, 1] (got 2.0)"),
    ({"reward": {"metric": "bleu"}}, "reward: 'metric' must be 'em' or 'f1' (got 'bleu')"),
    ({"loop": {"turn_tokens": -1}}, "loop: 'turn_tokens' must be an integer ≥ 1 (got -1)"),
    ({"loop": {"max_turn": 3}}, "loop: unknown keys ['max_turn']"),  # was: a TypeError traceback
    ({"budget": {"usd": -1}}, "budget usd must be non-negative"),
])
def test_nonsense_is_refused_when_the_recipe_is_read(tmp_path, sections, says):
    with pytest.raises(ConfigurationError) as refused:
        _read(tmp_path, **sections)
    assert says in str(refused.value)


def test_the_shipped_recipe_and_its_gpu_profile_pass():
    for gpu in (False, True):
        RouterR1TrainConfig.from_yaml("training/router_r1.yaml", gpu=gpu)


def test_loop_settings_refuse_a_top_p_of_zero():
    with pytest.raises(ConfigurationError, match=r"'top_p' must be a finite number in \(0, 1\] \(got 0.0\)"):
        LoopSettings(top_p=0.0)


def test_a_missing_or_broken_recipe_is_one_line_naming_it(tmp_path):
    from typer.testing import CliRunner

    from agentroute.cli import app

    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(app, ["train", "router-r1", "--config", str(missing), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2  # was: a FileNotFoundError traceback, exit 1
    assert f"recipe {missing} does not exist" in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("grpo: {max_steps: 2\n")
    with pytest.raises(ConfigurationError, match=f"recipe {broken} line 2: invalid YAML"):
        RouterR1TrainConfig.from_yaml(broken)
