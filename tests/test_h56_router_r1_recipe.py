"""A Router-R1 recipe's ``gpu:`` profile is checked when the recipe is read, with or without ``--gpu``."""

from __future__ import annotations

import pytest

from agentroute.errors import ConfigurationError
from agentroute.routers.router_r1.trainer import RouterR1TrainConfig


def _recipe(tmp_path, gpu: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"pool: []\ngpu: {gpu}\n")
    return path


def test_a_misspelt_value_of_the_gpu_profile_is_refused_on_the_cpu_read(tmp_path):
    """Was: accepted until --gpu on the GPU machine."""
    recipe = _recipe(tmp_path, "{sft: {trace: 5}}")
    with pytest.raises(ConfigurationError, match=r"the gpu: profile \(read with --gpu\): sft: unknown keys \['trace'\]"):
        RouterR1TrainConfig.from_yaml(recipe)


@pytest.mark.parametrize("gpu", [False, True])
def test_an_unknown_key_of_the_gpu_profile_names_the_known_ones(tmp_path, gpu):
    """Was: accepted without --gpu, an AttributeError traceback with it."""
    recipe = _recipe(tmp_path, "{polcy: x}")
    with pytest.raises(ConfigurationError, match=r"gpu: unknown recipe keys \['polcy'\]; known: \['budget'"):
        RouterR1TrainConfig.from_yaml(recipe, gpu=gpu)


def test_a_gpu_profile_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="gpu: is a mapping of recipe keys"):
        RouterR1TrainConfig.from_yaml(_recipe(tmp_path, "3"), gpu=True)


def test_a_pool_file_named_by_the_gpu_profile_is_read_beside_the_recipe(tmp_path):
    recipe = _recipe(tmp_path, "{pool: gpu_pool.yaml}")
    assert RouterR1TrainConfig.from_yaml(recipe, gpu=True).pool == str(tmp_path / "gpu_pool.yaml")


@pytest.mark.parametrize("gpu", [False, True])
def test_the_shipped_recipe_reads(gpu):
    cfg = RouterR1TrainConfig.from_yaml("training/router_r1.yaml", gpu=gpu)
    assert cfg.grpo["max_steps"] == (225 if gpu else 3)
